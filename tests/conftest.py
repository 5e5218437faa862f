import os

import pytest

from marl.config import Config

# Tiny data everywhere: tests must run in minutes on 2 cores.
TINY = dict(n_train_pairs=256, n_test_pairs=96, n_val_pairs=96, epochs=2, batch_size=64, hidden=32,
            latent_dim=4, probe_train_clips=256, umap=False, n_frames=8)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    os.environ["MARL_CACHE"] = str(tmp_path_factory.mktemp("marl-cache"))
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


@pytest.fixture
def tiny_cfg() -> Config:
    return Config.from_dict(TINY)


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """One smoke sweep through the real command line, shared by the sweep and analysis tests."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("smoke")
    proc = subprocess.run([sys.executable, "-m", "marl.sweep", "--space", "smoke", "--storage",
                           str(root / "results"), "--num-cpus", "2"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    return root, proc
