"""Crash safety: divergence, driver SIGKILL + resume, worker-node loss."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from marl.storage import PARTIAL
from tests.conftest import MARKER, TINY, in_process, kill_marked, reap_marked, run_module


def write_space(path: Path, space: str, epochs: int, n: int) -> Path:
    path.write_text(f"from ray import tune\nSPACE = {space}\nBASE = {TINY | {'epochs': epochs}!r}\nNUM_TRIALS = {n}\n")
    return path


def sweep(*args, cwd, timeout=240, env=None):
    return run_module("marl.sweep", *args, cwd=cwd, timeout=timeout, env=env)


def test_a_diverging_trial_stops_early_and_the_sweep_goes_on(tmp_path):
    space = write_space(tmp_path / "div.py", '{"lr": tune.grid_search([1e-3, 1e6])}', 3, 2)
    proc = sweep("--space", str(space), "--storage", str(tmp_path / "r"), "--num-cpus", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = pd.read_parquet(tmp_path / "r" / "div" / "results.parquet").set_index("config/lr")
    assert df.loc[1e-3, "status"] == "ok"
    assert df.loc[1e6, "status"] == "diverged" and df.loc[1e6, "diverged_epoch"] == 1
    assert pd.isna(df.loc[1e6, "probe/test/mlp/shared/timbre"])  # never evaluated
    report = in_process("analysis.report", tmp_path / "r" / "div", "--out", tmp_path / "rep", "--no-umap")
    assert report.returncode == 0, report.stderr[-2000:]
    assert "1 diverged" in (tmp_path / "rep" / "report.md").read_text()


def writing_tune_state(exp: Path) -> bool:
    """Whether Tune is copying its experiment state into the sweep's folder at this instant
    (marl.storage writes it to a partial file first, renamed into place when complete)."""
    try:
        return any(n.startswith(".experiment_state-") and PARTIAL in n for n in os.listdir(exp))
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    """One sweep, 4 trials at 1 CPU each, shared by the three tests below: while it runs, a
    second driver for it is started (with --overwrite and with --resume); once a trial has
    checkpointed and its report reached the folder, the driver is SIGKILLed while Tune copies its
    experiment state into the folder; then it is resumed with 2 CPUs per trial (of 2: one trial
    at a time; two resumed trials at once are the three-moment test's, below). Returns the
    sweep's folder, what the second drivers saw, the trials that had reported before the kill,
    and the resume's outcome.

    Module-scoped, it runs before the per-test isolation (conftest._isolated): it gives its
    programs a data cache and a marker of their own, and checks for leftovers itself."""
    root = tmp_path_factory.mktemp("killed")
    marker = uuid.uuid4().hex
    env = {**os.environ, "MARL_CACHE": str(root / "cache"), MARKER: marker}
    space = write_space(root / "kill.py", '{"gamma": tune.grid_search([0.0, 0.1, 0.5, 1.0])}', 20, 4)
    args = ["--space", str(space), "--storage", str(root / "r"), "--checkpoint-every", "1"]
    driver = subprocess.Popen([sys.executable, "-m", "marl.sweep", *args, "--num-cpus", "2", "--cpus-per-trial", "1"],
                              cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    exp = root / "r" / "kill"

    def reported() -> dict[str, int]:  # trial -> its newest epoch whose report reached the folder
        last = {trial.name: epochs_so_far(trial) for trial in exp.glob("trial_*")}
        return {name: epoch for name, epoch in last.items() if epoch}

    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list(exp.glob("trial_*")):
            time.sleep(0.2)
        assert list(exp.glob("trial_*")), "the sweep never started a trial"
        t0 = time.time()  # the second drivers run while the sweep goes on to its first checkpoint
        second = {extra: subprocess.Popen([sys.executable, "-m", "marl.sweep", *args, "--num-cpus", "2", extra],
                                          cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for extra in ("--overwrite", "--resume")}
        while time.time() < deadline and not (list(exp.glob("*/checkpoint_*")) and reported()):
            time.sleep(0.2)  # kill once some trial has checkpointed and reported, well before the end
        assert list(exp.glob("*/checkpoint_*")) and reported(), "no checkpoint or report appeared"
        refused = {extra: (proc.wait(60), proc.stdout.read(), proc.stderr.read()) for extra, proc in second.items()}
        seconds = time.time() - t0
        untouched = driver.poll() is None and bool(list(exp.glob("trial_*")))
        # ... at the hardest instant: while Tune copies its experiment state into the folder. A
        # kill there used to leave half a file, which Tune could not restore: it then started an
        # empty experiment and the rows lost their config (docs/reliability.md).
        while time.time() < deadline and not writing_tune_state(exp):
            time.sleep(0.0005)
        assert writing_tune_state(exp), "Tune's state was never seen being written"
    except BaseException:
        kill_marked(marker)  # the second drivers too, if they are still running
        raise
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        driver.wait(30)
    started = reported()  # these trained at 1 CPU before the kill
    assert started and max(started.values()) < 20, f"the kill did not land mid-trial: {started}"
    assert not (exp / "results.parquet").exists()
    resumed = sweep(*args, "--num-cpus", "2", "--cpus-per-trial", "2", "--resume", cwd=root, env=env, timeout=300)
    yield exp, (refused, seconds, untouched), started, resumed
    left = reap_marked(marker)
    assert not left, f"the killed sweep left processes running: {left}"


def reported_epochs(trial: Path) -> list[int]:
    import json

    return [json.loads(line)["epoch"] for line in (trial / "result.json").read_text().splitlines()]


def epochs_so_far(trial: Path) -> int:
    """The newest epoch in a running trial's result.json, 0 if none (the file may be absent, or
    its last line being written)."""
    import re

    try:
        return max(map(int, re.findall(r'"epoch": (\d+)', (trial / "result.json").read_text())), default=0)
    except FileNotFoundError:
        return 0


@pytest.mark.timeout(400)
def test_a_second_driver_for_a_running_sweep_refuses_at_once(killed_sweep):
    _, (refused, seconds, untouched), _, _ = killed_sweep
    for extra, (code, _, stderr) in refused.items():
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "running" in lines[0], (extra, stderr[-2000:])
    assert seconds < 30  # at once, not after Ray starts
    assert untouched  # the running sweep goes on, its trials' folders in place


@pytest.mark.timeout(400)
def test_sigkill_of_the_driver_then_resume_gives_every_row_once(killed_sweep):
    exp, _, _, proc = killed_sweep
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = pd.read_parquet(exp / "results.parquet")
    assert sorted(df["config/gamma"]) == [0.0, 0.1, 0.5, 1.0]  # exactly one row per trial
    assert set(df["status"]) == {"ok"}, df[["status", "error"]].to_string()
    assert df["epoch"].eq(20).all()
    assert df["restarts"].eq(0).all(), proc.stderr[-3000:]  # from Tune's checkpoint, or a newer one
    for trial in exp.glob("trial_*"):  # continuity: at most one epoch is reported twice
        epochs = reported_epochs(trial)
        assert epochs[-1] == 20 and len(epochs) - len(set(epochs)) <= 1, (trial.name, epochs)
        # (a report the killed driver never logged is reported again when its checkpoint is the
        # newest; an earlier one can be missing, its epoch not retrained)
    assert not list(exp.glob("*.tmp*")) and not list(exp.rglob(f"*{PARTIAL}*"))


@pytest.mark.timeout(400)
def test_resume_trains_with_the_resumed_commands_resources(killed_sweep):
    import json

    exp, _, started, proc = killed_sweep
    assert proc.returncode == 0, proc.stderr[-2000:]
    for trial in exp.glob("trial_*"):
        reports = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        if trial.name in started:  # trained at 1 CPU before the kill
            assert (reports[0]["cpus"], reports[0]["threads"]) == (1, 1), trial.name
        assert (reports[-1]["cpus"], reports[-1]["threads"]) == (2, 2), trial.name  # granted by the new flag, and used
    df = pd.read_parquet(exp / "results.parquet")
    assert df["cpus"].eq(2).all() and df["epoch"].eq(20).all() and df["restarts"].eq(0).all()


@pytest.mark.timeout(600)
def test_sigkill_at_three_moments_then_finishing_gives_the_same_rows(tmp_path):
    """Kill the driver at Tune's first save (tuner.pkl written, no experiment state yet), mid-trial,
    and at the end (results.parquet written, Ray shutting down); then do what the docs say:
    --resume if the sweep saved state, else start it with --overwrite. After the first, a resume
    must not start an empty sweep: it refuses in one line, and --overwrite runs the whole sweep.
    After the last, the resume of a finished sweep gives its rows again."""
    from ray import tune

    space = write_space(tmp_path / "rnd.py", '{"gamma": tune.grid_search([0.0, 0.1, 0.5])}', 12, 3)
    args = ["--space", str(space), "--storage", str(tmp_path / "r"), "--num-cpus", "2"]
    exp = tmp_path / "r" / "rnd"
    results = exp / "results.parquet"

    def written() -> int | None:  # results.parquet's mtime, None while there is none
        try:
            return results.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    for moment in ("first save", 12.0, "results written"):
        before = written()  # the last round's
        driver = subprocess.Popen([sys.executable, "-m", "marl.sweep", *args, "--overwrite"], cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 120
        if moment == "first save":
            while time.time() < deadline and not (exp / "tuner.pkl").exists():
                time.sleep(0.0005)
        elif moment == "results written":
            while time.time() < deadline and written() in (None, before):
                time.sleep(0.0005)
            assert written() not in (None, before), "no results were written"
        else:
            time.sleep(moment)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)
        if moment == "first save":
            assert (exp / "tuner.pkl").exists() and not list(exp.glob("experiment_state-*.json")), "not the first save"
            assert tune.Tuner.can_restore(str(exp))  # Tune would resume it, into an empty sweep
            proc = in_process("marl.sweep", *args, "--resume", cwd=tmp_path)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2 and len(lines) == 1 and "--overwrite" in lines[0], proc.stderr[-2000:]
            assert not (exp / "results.parquet").exists()
        finish = "--resume" if tune.Tuner.can_restore(str(exp)) and moment != "first save" else "--overwrite"
        assert finish == "--resume" or moment != "results written"
        proc = sweep(*args, finish, cwd=tmp_path, timeout=300)
        if finish == "--resume" and proc.returncode == 2 and "--overwrite" in proc.stderr:
            # killed after tuner.pkl, before Tune's first experiment state: nothing to resume
            finish = "--overwrite"
            proc = sweep(*args, finish, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, (moment, finish, proc.stderr[-2000:])
        df = pd.read_parquet(exp / "results.parquet")
        assert sorted(df["config/gamma"]) == [0.0, 0.1, 0.5], moment
        assert set(df["status"]) == {"ok"} and df["epoch"].eq(12).all(), moment
        assert not list(exp.glob("*.tmp*"))


@pytest.mark.timeout(200)
def test_a_resume_whose_tune_state_was_cut_off_refuses_in_one_line_and_keeps_the_results(smoke_sweep, tmp_path):
    """What a kill mid-copy left before marl.storage: half an experiment state. Tune would log
    "Failed to restore the run state", start an empty experiment, train defaults and write a
    row without any config column; the resume refuses instead and touches nothing."""
    import shutil

    root, first = smoke_sweep
    assert first.returncode == 0, first.stderr[-2000:]
    exp = tmp_path / "results" / "smoke"
    shutil.copytree(root / "results" / "smoke", exp)
    (state,) = exp.glob("experiment_state-*.json")
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    before = (exp / "results.parquet").read_bytes()
    proc = in_process("marl.sweep", "--space", "smoke", "--storage", tmp_path / "results", "--resume", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert state.name in lines[0] and "--overwrite" in lines[0] and "Traceback" not in proc.stderr
    assert (exp / "results.parquet").read_bytes() == before
    # a whole state saved before Tune added any trial: Tune's resume fails on it just the same
    state.write_text('{"trial_data": [], "runner_data": {}, "stats": {}}')
    proc = in_process("marl.sweep", "--space", "smoke", "--storage", tmp_path / "results", "--resume", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "no saved state yet" in lines[0], proc.stderr[-2000:]
    assert (exp / "results.parquet").read_bytes() == before


def test_a_row_takes_its_config_from_the_trials_params_or_the_sweep_refuses(tmp_path):
    """A trial that errored before reporting has no config in its result; Tune recorded it in
    params.json when the trial started. With neither, no row is written without it."""
    import json
    from types import SimpleNamespace

    import pyarrow.fs

    from marl.errors import UserError
    from marl.results import results_frames

    def result(config, params):
        folder = tmp_path / f"trial_{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        if params is not None:
            (folder / "params.json").write_text(json.dumps(params))
        return SimpleNamespace(config=config, path=str(folder), filesystem=pyarrow.fs.LocalFileSystem(),
                               error=RuntimeError("worker died"), metrics={}, metrics_dataframe=None,
                               checkpoint=None)

    df, _ = results_frames([result(None, {"gamma": 0.5, "seed": 2}), result({"gamma": 0.1}, {"gamma": 9.0})])
    assert df["config/gamma"].tolist() == [0.5, 0.1] and df["config/seed"].iloc[0] == 2
    assert df["status"].tolist() == ["error", "error"]
    for params in (None, {}):
        lost = result({}, params)
        with pytest.raises(UserError, match=f"trial {Path(lost.path).name}: its configuration is recorded neither"):
            results_frames([lost])


def test_a_checkpoint_that_tunes_saved_state_names_but_num_to_keep_deleted_is_recreated_empty(tmp_path, capfd):
    """Tune's saved state is a moment older than the trials' folders: the checkpoint it names
    may be gone, and Tune would fail the trial before marl's restore_state could pick the
    newest one (ray-project/ray#27790)."""
    from ray import tune
    from ray.train import CheckpointConfig
    from ray.train._internal.checkpoint_manager import (
        _CheckpointManager,
        _TrainingResult,
    )
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    from marl.resume import recreate_named_checkpoints

    def trial(name: str, latest: str | None) -> tuple[str, str]:
        metadata = _TrainingRunMetadata()
        metadata.checkpoint_manager = _CheckpointManager(CheckpointConfig(num_to_keep=2))
        if latest:
            path = str(tmp_path / "elsewhere" / name / latest)  # as recorded: the driver's old path
            metadata.checkpoint_manager.register_checkpoint(_TrainingResult(tune.Checkpoint(path), {}))
        return "{}", metadata.get_json_state()

    exp = tmp_path / "exp"
    (exp / "trial_b" / "checkpoint_000004").mkdir(parents=True)
    (exp / "trial_b" / "checkpoint_000004" / "trainer.pt").write_bytes(b"kept")
    recreate_named_checkpoints(str(exp), {"trial_data": [trial("trial_a", "checkpoint_000002"),
                                                          trial("trial_b", "checkpoint_000004"),
                                                          trial("trial_c", None)]})
    assert (exp / "trial_a" / "checkpoint_000002").is_dir() and not list((exp / "trial_a").rglob("*.pt"))
    assert (exp / "trial_b" / "checkpoint_000004" / "trainer.pt").read_bytes() == b"kept"
    assert not (exp / "trial_c").exists()
    err = capfd.readouterr().err
    assert "trial_a" in err and "checkpoint_000002" in err and "trial_b" not in err


def test_a_trial_whose_config_lost_its_fields_refuses_to_train_defaults():
    from marl.trial import configs as trial_configs

    with pytest.raises(ValueError, match="Tune lost the sweep's configuration"):
        trial_configs({})
    assert trial_configs({"trial": {"gamma": 0.5}, "epochs": 3})[0].gamma == 0.5


def test_tune_state_files_appear_whole_or_not_at_all(tmp_path):
    import pyarrow.fs

    from marl.storage import (
        _AtomicWriter,
        atomic_local_filesystem,
        remove_partial_files,
    )

    fs = atomic_local_filesystem()
    target = tmp_path / "exp" / "tuner.pkl"
    source = tmp_path / "staging"
    source.mkdir()
    target.parent.mkdir()  # as Tune creates it before it copies
    (source / target.name).write_text("v1" * 50_000)
    pyarrow.fs.copy_files(str(source), str(target.parent), destination_filesystem=fs)
    assert target.read_text() == "v1" * 50_000
    stream = fs.open_output_stream(str(target))
    stream.write(b"v2, half written")  # the driver dies here: the stream is never closed
    assert target.read_text() == "v1" * 50_000  # the complete previous version, not half of v2
    assert remove_partial_files(target.parent) == 1 and [p.name for p in target.parent.iterdir()] == [target.name]
    with fs.open_output_stream(str(target)) as stream:
        stream.write(b"v3")
    assert target.read_text() == "v3"
    # Tune rewrites its staging experiment state in place while a copy may be reading it: a
    # copy that read half of it is closed normally, and must not replace the whole one
    state = target.with_name("experiment_state-1.json")
    whole = '{"trial_data": [["{}", "{}"]], "runner_data": {}}'
    for text in (whole, whole[: len(whole) // 2]):
        with fs.open_output_stream(str(state)) as stream:
            stream.write(text.encode())
    assert state.read_text() == whole
    import errno

    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    writer = _AtomicWriter(str(target))
    writer.file.close()
    writer.file = FullDisk()
    with pytest.raises(OSError):
        writer.write(b"v4")
    writer.close()  # a file whose write failed is dropped, not published
    assert target.read_text() == "v3" and sorted(p.name for p in target.parent.iterdir()) == [state.name, target.name]
    assert fs.type_name == "py::marl-atomic-local" and pickle_round_trip(fs).equals(fs)  # Ray ships it to workers


def pickle_round_trip(obj):
    import pickle

    return pickle.loads(pickle.dumps(obj))


@pytest.mark.timeout(300)
def test_losing_a_worker_node_costs_only_a_retry(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from marl.sweep import parse_args, run

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        exp = tmp_path / "smoke"

        def kill_worker_mid_trial():
            deadline = time.time() + 120
            while time.time() < deadline and not list(exp.glob("*/checkpoint_*")):
                time.sleep(0.2)
            cluster.remove_node(worker, allow_graceful=False)

        killer = threading.Thread(target=kill_worker_mid_trial, daemon=True)
        killer.start()
        df = run(parse_args(["--space", "smoke", "--storage", str(tmp_path), "--set", "epochs=30",
                             "--max-failures", "3"]))
        killer.join(5)
        assert len(df) == 2 and set(df["status"]) == {"ok"} and df["epoch"].eq(30).all()
        assert not worker.all_processes  # the worker really went away
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_resume_takes_the_newest_checkpoint_that_loads_and_counts_only_lost_recorded_work(tmp_path, capfd):
    import pyarrow.fs
    import torch
    from ray import tune

    from marl.trainable import STATE_FILE, mark_started, restore_state

    def checkpoint(i: int, epoch: int | None) -> tune.Checkpoint:
        folder = trial / f"checkpoint_00000{i}"
        folder.mkdir(parents=True, exist_ok=True)
        if epoch is None:
            (folder / STATE_FILE).write_bytes(b"half a file")  # killed mid-write
        else:
            torch.save({"trainer": {"epoch": epoch}, "diverged": {}}, folder / STATE_FILE)
        return tune.Checkpoint.from_directory(str(folder))

    trial = tmp_path / "trial"
    local = pyarrow.fs.LocalFileSystem()
    storage = (local, str(trial))
    checkpoint(2, 3)
    checkpoint(3, None)
    gone = tune.Checkpoint.from_directory(str(trial / "checkpoint_000001"))  # deleted by num_to_keep
    state, found, source = restore_state(gone, "cpu", storage)
    assert state["trainer"] == {"epoch": 3} and found == "newer"  # newer than Tune's: nothing lost
    assert source.path.endswith("checkpoint_000002") and "checkpoint_000003" in capfd.readouterr().err
    named = checkpoint(3, None)  # the checkpoint Tune recorded is unreadable: recorded work is lost
    assert restore_state(named, "cpu", storage)[:2] == ({"trainer": {"epoch": 3}, "diverged": {}}, "older")
    assert restore_state(checkpoint(4, 5), "cpu", storage)[:2] == ({"trainer": {"epoch": 5}, "diverged": {}}, "named")
    older = tune.Checkpoint.from_directory(str(trial / "checkpoint_000002"))  # what a stale state names
    assert restore_state(older, "cpu", storage)[:2] == ({"trainer": {"epoch": 5}, "diverged": {}}, "newer")
    # killed before Tune registered the trial's first checkpoint: Tune names none, the folder has one
    assert restore_state(None, "cpu", storage)[:2] == ({"trainer": {"epoch": 5}, "diverged": {}}, "newer")
    fresh = (local, str(tmp_path / "fresh"))
    assert restore_state(None, "cpu", fresh) == (None, "named", None)  # a first start is no restart
    mark_started(fresh)  # started, killed before any checkpoint: a restart from epoch 0, counted
    assert restore_state(None, "cpu", fresh) == (None, "none", None)
    empty = tmp_path / "empty" / "checkpoint_000001"
    assert restore_state(tune.Checkpoint.from_directory(str(empty)), "cpu", (local, str(empty.parent))) == (None, "none", None)


def test_a_full_disk_while_writing_results_says_so_and_keeps_the_previous_file(tmp_path, monkeypatch):
    import errno

    from marl.errors import UserError
    from marl.results import write_parquet

    target = tmp_path / "results.parquet"
    write_parquet(pd.DataFrame({"a": [1, 2]}), str(target))

    def no_space(self, path, *a, **k):
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", no_space)
    with pytest.raises(UserError, match="disk full"):
        write_parquet(pd.DataFrame({"a": [3]}), str(target))
    monkeypatch.undo()
    assert pd.read_parquet(target)["a"].tolist() == [1, 2]  # the earlier results, intact
    assert not list(tmp_path.glob(".*tmp*"))


def descendants(root: int, needle: str) -> list[int]:
    """PIDs of the processes below `root` whose command line contains `needle` (Linux /proc)."""
    def parent(pid: int) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])

    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or needle not in (entry / "cmdline").read_bytes().decode(errors="replace"):
                continue
            pid = ancestor = int(entry.name)
            while ancestor > 1 and ancestor != root:
                ancestor = parent(ancestor)
        except (OSError, ValueError, IndexError):  # the process ended while we looked
            continue
        if ancestor == root:
            found.append(pid)
    return found


@pytest.mark.timeout(400)
def test_a_trial_whose_worker_is_sigkilled_is_retried_from_its_checkpoint(tmp_path):
    import json

    space = write_space(tmp_path / "wk.py", '{"gamma": tune.grid_search([0.1])}', 25, 1)
    exp = tmp_path / "r" / "wk"
    driver = subprocess.Popen([sys.executable, "-m", "marl.sweep", "--space", str(space), "--storage",
                               str(tmp_path / "r"), "--num-cpus", "2", "--checkpoint-every", "1",
                               "--max-failures", "2"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list(exp.glob("*/checkpoint_000001")):
            time.sleep(0.002)
        workers = descendants(driver.pid, "ray::ImplicitFunc")  # not another Ray's on this machine
        assert len(workers) == 1, workers  # the one trial's worker process
        # The hardest moment: epoch 2's checkpoint is being written, or written but not yet
        # registered by Tune, which may or may not have logged epoch 2's report.
        os.kill(workers[0], signal.SIGKILL)
        out, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 0, out[-3000:]
    df = pd.read_parquet(exp / "results.parquet")
    log = out[-3000:]
    assert df["status"].tolist() == ["ok"] and df["epoch"].tolist() == [25], log
    assert df["restarts"].tolist() == [0], log  # it went on from the checkpoint Tune named, or a newer one
    (trial,) = exp.glob("trial_*")
    epochs = [json.loads(line)["epoch"] for line in (trial / "result.json").read_text().splitlines()]
    assert epochs.count(1) == 1, (epochs, log)  # not retrained from scratch
    assert epochs[-1] == 25 and sorted(set(epochs)) == list(range(1, 26)), (epochs, log)
    assert len(epochs) - 25 <= 1, (epochs, log)  # one epoch reported twice at most
    assert "failed" in out.lower() or "error" in out.lower()  # Tune saw the worker die and retried


def test_a_full_disk_while_writing_a_checkpoint_is_one_clear_error(tmp_path, monkeypatch):
    import errno

    import marl.trainable as trainable

    def no_space(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainable.torch, "save", no_space)
    with pytest.raises(OSError, match="disk full while writing the epoch-3 checkpoint.*earlier checkpoints are intact"):
        trainable.write_checkpoint(tmp_path, {"trainer": {"epoch": 3}}, {})

    def denied(obj, path):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(trainable.torch, "save", denied)
    with pytest.raises(PermissionError):  # other errors are not dressed up as a full disk
        trainable.write_checkpoint(tmp_path, {"trainer": {"epoch": 3}}, {})
