"""The sweep's code path on a multi-node Ray cluster (ray.cluster_utils.Cluster, one machine)."""

import pandas as pd
import pytest
import ray
from ray.cluster_utils import Cluster

from marl.sweep import parse_args, run


@pytest.fixture
def two_node_cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.timeout(240)
def test_sweep_runs_trials_on_both_nodes(two_node_cluster, tmp_path):
    # two 1-CPU trials on two 1-CPU nodes: they can only run side by side on different nodes
    df = run(parse_args(["--space", "smoke", "--storage", str(tmp_path), "--set", "epochs=3"]))
    assert len(df) == 2 and set(df["status"]) == {"ok"}
    assert df["node"].nunique() == 2
    assert len(pd.read_parquet(tmp_path / "smoke" / "results.parquet")) == 2


@pytest.mark.timeout(240)
def test_an_embedded_sweep_starts_its_own_ray_beside_a_running_cluster(two_node_cluster, tmp_path):
    # without address="local", ray.init in the sweep joined the running cluster and refused num_cpus
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "marl.sweep", "--space", "smoke", "--storage", str(tmp_path),
                           "--num-cpus", "1", "--set", "epochs=1"], capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(cluster: 1 CPUs" in proc.stdout  # its own embedded Ray, not the 2-node cluster
