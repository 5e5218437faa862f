import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from marl.config import Config

# Tiny data everywhere: tests must run in minutes on 2 cores.
TINY = dict(n_train_pairs=256, n_test_pairs=96, n_val_pairs=96, epochs=2, batch_size=64, hidden=32,
            latent_dim=4, probe_train_clips=256, umap=False, n_frames=8)



def tiny_flags(*leave_out: str, **over) -> list[str]:
    """TINY (with `over`) as `python -m marl.train` flags, minus the fields in `leave_out`."""
    values = {k: v for k, v in {**TINY, **over}.items() if k not in leave_out}
    return [a for k, v in values.items() for a in (f"--{k.replace('_', '-')}", str(v).lower() if isinstance(v, bool) else str(v))]


def tiny_sets(**over) -> list[str]:
    """TINY (with `over`) as `python -m marl.sweep` --set flags."""
    return [a for k, v in {**TINY, **over}.items() for a in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]


MARKER = "MARL_TEST_ID"  # in the environment of every program a test starts: sweeps, Ray, its workers
LEFTOVER_GRACE_S = 30  # Ray's processes take a few seconds to exit after a shutdown or a kill


@pytest.fixture(autouse=True, scope="session")
def _quiet_ray():
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


def processes_marked(value: str) -> dict[int, str]:
    """PID -> command line of every process whose environment holds MARKER=value (Linux /proc)."""
    needle = f"{MARKER}={value}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except OSError:  # ended while we looked, or not ours to read
            continue
    return found


def kill_marked(value: str) -> None:
    """SIGKILL every process marked MARKER=value."""
    for pid in processes_marked(value):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # ended meanwhile
            pass


def reap_marked(value: str) -> dict[int, str]:
    """Give the processes marked MARKER=value LEFTOVER_GRACE_S to exit, kill the rest, and
    return those still running at the deadline (PID -> command line)."""
    deadline = time.time() + LEFTOVER_GRACE_S
    while (left := processes_marked(value)) and time.time() < deadline:
        time.sleep(0.5)
    kill_marked(value)  # read again: a PID seen above may have been reused
    return left


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Each test gets its own data cache, and leaves no process or Ray session behind: its
    outcome then cannot depend on what ran before it. A leftover fails the test loudly (and is
    killed, so that it cannot reach the next one)."""
    import ray

    value = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, value)
    monkeypatch.setenv("MARL_CACHE", str(tmp_path_factory.mktemp("marl-cache")))
    yield
    problems = []
    if ray.is_initialized():
        ray.shutdown()
        problems.append("a Ray session was left initialised in the test process")
    left = reap_marked(value)
    if left:
        problems.append(f"{len(left)} process(es) left running: "
                        + "; ".join(f"{pid} {cmd}" for pid, cmd in sorted(left.items())))
    if problems:
        pytest.fail("test hygiene: " + " and ".join(problems), pytrace=False)


@pytest.fixture
def tiny_cfg() -> Config:
    return Config.from_dict(TINY)


def run_module(module: str, *args: str, cwd=None, env=None, timeout: float = 240):
    """A command line as a user runs it: `python -m module args` in a fresh interpreter."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def in_process(module: str, *args: str, cwd=None):
    """`run_module` without starting an interpreter, for inputs a command line must refuse:
    the module's `main(argv)` under `exit_on_user_error`, as `python -m` runs it. Returns what
    subprocess.run does (returncode, stdout, stderr)."""
    import contextlib
    import importlib
    import io
    import subprocess
    import sys

    from marl.errors import exit_on_user_error

    main = importlib.import_module(module).main
    out, err, code = io.StringIO(), io.StringIO(), 0
    here, environ = os.getcwd(), dict(os.environ)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exit_on_user_error(lambda: main([str(a) for a in args]))
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        # a command that got further than it should leaves nothing to the next test: what it
        # set in the environment, the sweep lock it took (a Ray session fails the test anyway)
        os.chdir(here)
        os.environ.clear()
        os.environ.update(environ)
        sweep = sys.modules.get("marl.sweep")
        if sweep is not None and sweep._LOCK is not None:
            sweep._LOCK.release()
            sweep._LOCK = None
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def run_smoke_sweep(root: Path, *flags: str):
    """The smoke sweep through the real command line, under root/results, with a data cache
    of its own (the tests that share a sweep share it on purpose)."""
    import subprocess
    import sys

    env = {**os.environ, "MARL_CACHE": str(root / "cache")}
    return subprocess.run([sys.executable, "-m", "marl.sweep", "--space", "smoke", "--storage",
                           str(root / "results"), "--num-cpus", "2", *flags],
                          capture_output=True, text=True, timeout=300, cwd=root, env=env)


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """One smoke sweep, shared by the sweep and analysis tests."""
    root = tmp_path_factory.mktemp("smoke")
    return root, run_smoke_sweep(root)


@pytest.fixture(scope="session")
def packed_smoke_sweep(tmp_path_factory):
    """The smoke sweep's two configurations packed into one trial, tracked in MLflow."""
    root = tmp_path_factory.mktemp("packed")
    return root, run_smoke_sweep(root, "--pack", "2", "--log", "mlflow")
