import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

import marl
import search_spaces
from marl import names, trial
from marl.plan import count_trials, expand_grid, grid_trials
from marl.sweep import parse_args
from tests.conftest import TINY, in_process, run_module, tiny_sets

ROOT = Path(__file__).resolve().parents[1]


def sweep_cli(*args, cwd=None, timeout=240):
    return run_module("marl.sweep", *args, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("name", search_spaces.NAMES)
def test_every_named_space_resolves_to_its_documented_number_of_trials(name):
    space = search_spaces.load(name)
    assert space.num_trials is not None and count_trials(space) == space.num_trials
    if space.search == "grid":  # and every grid point is a valid config
        grid_trials(space, parse_args(["--space", name]))


def test_paper_ablation_has_recon_only_and_one_term_at_a_time():
    space = search_spaces.load("paper_ablation")
    variants = [trial.flatten(v) for v in expand_grid(space.space)]
    weights = {(v["alpha"], v["beta"], v["gamma"]) for v in variants}
    assert (0.0, 0.0, 0.0) in weights and len(weights) == 10
    assert all(sum(w > 0 for w in ws) <= 1 for ws in weights)
    assert sorted({v["seed"] for v in variants}) == [0, 1, 2]


def test_log10_fields_include_zero_and_win_over_plain_fields_in_any_order():
    cfg = trial.flatten({"alpha_log10": -3.2, "beta_log10": 0.0, "gamma": 0.1})
    assert cfg == {"alpha": 0.0, "beta": 1.0, "gamma": 0.1}
    cfg = trial.flatten({"set": {"gamma": 0.5}, "gamma_log10": -1.0, "gamma": 0.0,
                                              "point": {"gamma": 0.2, "alpha": 1.0}, "alpha": 0.0})
    assert cfg == {"gamma": 0.5, "alpha": 1.0}


def test_set_overrides_win_over_space_axes():
    args = parse_args(["--space", "smoke", "--set", "gamma=0.25", "--set", "epochs=1"])
    for cfg in grid_trials(search_spaces.load("smoke"), args):
        assert cfg["gamma"] == 0.25 and cfg["epochs"] == 1


def test_config_file_sets_every_trials_base_and_axes_and_set_still_win(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("hidden: 16\ngamma: 0.7\nepochs: 3\neval_every: 1\n")
    args = parse_args(["--space", "smoke", "--config", str(base), "--set", "epochs=1"])
    variants = grid_trials(search_spaces.load("smoke"), args)
    assert [v["hidden"] for v in variants] == [16, 16]  # the file beats the space's BASE (32)
    assert sorted(v["gamma"] for v in variants) == [0.0, 0.5]  # the space's axis beats the file
    assert {v["epochs"] for v in variants} == {1} and {v["eval_every"] for v in variants} == {1}


def test_shipped_configs_are_valid():
    from marl.config import Config

    for path in sorted((ROOT / "configs").glob("*.yaml")):
        Config.from_dict(Config.from_file(path))


def test_smoke_sweep_end_to_end_writes_every_trial(smoke_sweep):
    tmp_path, proc = smoke_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "results" / "smoke"
    df = pd.read_parquet(exp / "results.parquet")
    assert len(df) == 2 and set(df["status"]) == {"ok"}
    assert sorted(df["config/gamma"]) == [0.0, 0.5]
    for latent in ("private", "shared"):
        for task in names.TASKS:
            assert df[names.probe(latent, task)].between(0, 1).all()
    assert len(df["mi/timbre/shared"].iloc[0]) == 4  # one MI per latent dimension
    # every scalar an evaluation reports is a column (chance rates and the exact KL were once left out)
    assert set(names.eval_scalars()) <= set(df.columns)
    assert df[names.chance("shared", "pitch")].between(0, 1).all() and df[names.kl_exact("fused", "dim_kl")].notna().all()
    epochs = pd.read_parquet(exp / "epochs.parquet")
    assert len(epochs) == 2 * 2 and {"trial", "epoch", "loss/recon"} <= set(epochs.columns)
    # where each trial's time went: training every epoch, evaluation at the end, a checkpoint between
    assert (df["time/train_seconds"] > 0).all() and (df["time/eval_seconds"] > 0).all()
    first = epochs[epochs["epoch"] == 1]
    assert (first["time/eval_seconds"] == 0).all() and (first["time/train_seconds"] > 0).all()
    assert (epochs.groupby("trial")["time/train_seconds"].diff().dropna() > 0).all()  # cumulative
    for ckpt in df["checkpoint"]:
        assert (Path(ckpt) / "latents.parquet").exists()
    assert "results.parquet" in proc.stdout
    import torch

    if not torch.cuda.is_available():  # with GPUs, trials get a share of one and are packed
        assert "0 GPU each" in proc.stdout and "packed" not in proc.stdout
    # a console one can read: one line per trial event, then the paper's table (mean ± std per setting)
    before, summary = proc.stdout.split("2 configurations (", 1)
    assert len(before.splitlines()) + len(proc.stderr.splitlines()) <= 30, before + proc.stderr
    assert sum("done in" in line for line in before.splitlines()) == 2
    assert "Checkpoint successfully created" not in proc.stdout + proc.stderr and "╭" not in before
    assert "Token authentication is enabled" not in proc.stderr  # Ray 2.60's notice, every sweep
    assert re.search(r"estimate: ~\d+ s \(1 round\(s\) of", before), before  # 2 trials, 2 at once
    header = summary.splitlines()[1].split()
    assert header[:2] == ["gamma", "n"] and "shared/pitch" in header and "1/1" in summary
    # provenance: what computed each row
    assert (df["provenance/torch"] == torch.__version__.split("+")[0]).all()
    assert df["provenance/git_commit"].str.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown").all()
    # a second run under the same name must not silently overwrite it
    again = sweep_cli("--space", "smoke", "--storage", str(tmp_path / "results"), cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr


OPTUNA_SPACE = f'''
from ray import tune
SEARCH = "optuna"
SPACE = {{"gamma_log10": tune.uniform(-3.5, 0.0), "beta": tune.uniform(0.0, 0.5)}}
BASE = {TINY!r}
METRICS = ["probe/val/mlp/shared/timbre", "leakage/val/mlp"]
MODES = ["max", "min"]
NUM_SAMPLES = 2
NUM_TRIALS = 2
'''


def test_tiny_optuna_sweep_from_a_user_space_file(tmp_path):
    space_file = tmp_path / "my_space.py"
    space_file.write_text(OPTUNA_SPACE)
    proc = sweep_cli("--space", str(space_file), "--storage", str(tmp_path / "r"), "--num-cpus", "2",
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_parquet(tmp_path / "r" / "my_space" / "results.parquet")
    assert len(df) == 2 and set(df["status"]) == {"ok"}
    assert df["config/gamma"].nunique() == 2 and "leakage/test/mlp" in df
    # the study outlives the driver: a journal file that optuna (and optuna-dashboard) opens
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = JournalStorage(JournalFileBackend(str(tmp_path / "r" / "my_space" / "optuna.journal")))
    study = optuna.load_study(study_name="my_space", storage=journal)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and all(len(t.values) == 2 for t in done)


@pytest.mark.parametrize("args,needle", [
    (["--space", "nope"], "space"),
    (["--space", "/nonexistent/space.py"], "space"),
    (["--set", "gamma"], "--set"),
    (["--set", "gama=1"], "gama"),
    (["--set", "gamma=-1"], "gamma"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial"),
    (["--gpus-per-trial", "-0.5"], "--gpus-per-trial"),
    (["--gpus-per-trial", "some"], "--gpus-per-trial"),
    (["--checkpoint-every", "0"], "--checkpoint-every"),
    (["--max-failures", "-1"], "--max-failures"),
    (["--scheduler", "hyperband"], "--scheduler"),
    (["--resume", "--name", "never_ran"], "--resume"),
    (["--storage", "/etc/hostname/sub"], "storage"),
    (["--resume", "--overwrite"], "--resume"),
    (["--pack", "0"], "--pack"),
    (["--search", "optuna"], "--search"),
    (["--space", "optuna", "--scheduler", "asha"], "--scheduler"),
    (["--pack", "4", "--scheduler", "asha", "--set", "eval_every=1"], "--pack"),
    (["--scheduler", "asha"], "eval_every"),
    (["--scheduler", "asha", "--set", "eval_every=1", "--scheduler-metric", "probe/mlp"], "--scheduler-metric"),
    (["--config", "/nonexistent/base.yaml"], "config"),
])
def test_bad_flags_give_one_line_and_exit_2(tmp_path, args, needle):
    if "--storage" not in args:
        args = [*args, "--storage", str(tmp_path / "r")]
    proc = in_process("marl.sweep", *([] if "--space" in args else ["--space", "smoke"]), *args, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "smoke").exists()


def test_the_command_line_exits_2_on_bad_input(tmp_path):
    proc = sweep_cli("--space", "smoke", "--set", "gama=1", "--storage", str(tmp_path / "r"), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == ["error: --set: unknown config field 'gama'"]


def test_bad_space_file_is_rejected(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("SPACE = {'gamma': -1.0}\nNUM_TRIALS = 1\n")
    proc = in_process("marl.sweep", "--space", bad, "--storage", tmp_path / "r", cwd=tmp_path)
    assert proc.returncode == 2 and "gamma" in proc.stderr and "Traceback" not in proc.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("SPACE = {\n")
    proc = in_process("marl.sweep", "--space", broken, "--storage", tmp_path / "r", cwd=tmp_path)
    assert proc.returncode == 2 and "broken.py" in proc.stderr


def test_cluster_yaml_passes_ray_validation_and_typos_do_not():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    assert config["available_node_types"]["gpu_worker"]["resources"]["GPU"] >= 1
    config["available_node_types"]["gpu_worker"]["max_wokers"] = 2
    with pytest.raises(Exception):
        validate_config(prepare_config(config))


def test_packed_sweep_writes_one_row_and_one_loadable_model_per_configuration(smoke_sweep, packed_smoke_sweep):
    import json

    import torch

    root, proc = smoke_sweep
    assert proc.returncode == 0
    packed_root, packed = packed_smoke_sweep
    assert packed.returncode == 0, packed.stderr[-3000:]
    df = pd.read_parquet(packed_root / "results" / "smoke" / "results.parquet").sort_values("config/gamma")
    ref = pd.read_parquet(root / "results" / "smoke" / "results.parquet").sort_values("config/gamma")
    assert len(df) == 2 and df["trial"].str.rsplit("/", n=1).str[0].nunique() == 1  # one Ray trial
    assert set(df["status"]) == {"ok"}
    # on a CPU each member trains with its own run's arithmetic (marl.trainer) and is probed from
    # its own seed, so it is its solo run: the same losses; test accuracies within the 0.01
    # (tests/test_pack.py holds them equal, in one process)
    assert df["loss/total"].to_numpy() == pytest.approx(ref["loss/total"].to_numpy(), rel=1e-6)
    accuracies = [names.probe(latent, task, "test", kind) for latent in names.LATENTS
                  for task in names.TASKS for kind in names.PROBE_KINDS]
    assert df[accuracies].to_numpy() == pytest.approx(ref[accuracies].to_numpy(), abs=0.01)
    for ckpt, gamma in zip(df["checkpoint"], df["config/gamma"]):
        folder = Path(ckpt)
        assert (folder / "latents.parquet").exists()
        saved = torch.load(folder / "model.pt", weights_only=False)
        assert saved["config"]["gamma"] == gamma and "normalisation" in saved
        model = marl.load_model(folder / "model.pt")  # every member stands alone, ready to encode
        assert model.cfg.gamma == gamma and not model.training
        assert json.loads((folder / "metrics.json").read_text())["epoch"] == 2
    assert len(pd.read_parquet(packed_root / "results" / "smoke" / "epochs.parquet")) == 2 * 2


@pytest.mark.parametrize("pack", [1, 4])
def test_each_trials_tune_config_holds_exactly_the_values_it_trains_with(pack):
    from marl.plan import grid_param_space, pack_trials

    trials = grid_trials(search_spaces.load("paper_ablation"), parse_args([]))
    param_space = grid_param_space(pack_trials(trials, pack))
    # no base value beside a grid point's own (the old table showed gamma 0.1 and point/gamma 0.0)
    assert not {"alpha", "beta", "gamma", "seed"} & set(param_space)
    members = [m for v in expand_grid(param_space) for m in trial.members(v)]
    assert members == trials  # every trial trains exactly its configuration
    assert len(expand_grid(param_space)) == (30 if pack == 1 else 8)


def asha_stops(scheduler, metric: str, worse_each: float) -> set[tuple[int, int]]:
    """(epoch, trial) of each STOP the scheduler gives 8 trials that report epochs 1-12, each
    trial `worse_each` worse than the one before, the metric NaN except at multiples of 3 (as
    a sweep with eval_every=3 reports it). Only Tune's public scheduler interface is used."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    trials = [SimpleNamespace(trial_id=str(i)) for i in range(8)]
    for t in trials:
        scheduler.on_trial_add(None, t)
    stopped = set()
    for epoch in range(1, 13):
        for i, t in enumerate(trials):
            if any(i == j for _, j in stopped):
                continue
            value = worse_each * i if epoch % 3 == 0 else float("nan")
            if scheduler.on_trial_result(None, t, {"epoch": epoch, metric: value}) == TrialScheduler.STOP:
                stopped.add((epoch, i))
    return stopped


def test_asha_stops_on_validation_separation_at_evaluation_epochs():
    from marl.tuner import tune_config

    args = parse_args(["--space", "smoke", "--scheduler", "asha", "--set", "eval_every=3"])
    space = search_spaces.load("smoke")
    stopped = asha_stops(tune_config(space, args, eval_every=3).scheduler, names.SELECTION, worse_each=-1.0)
    assert stopped and all(epoch % 3 == 0 for epoch, _ in stopped)  # only at an evaluation
    assert 0 not in {i for _, i in stopped}  # the best separation goes on
    # were it to maximise leakage, or read another metric, the worst trials would go on instead
    args = parse_args(["--space", "smoke", "--scheduler", "asha", "--scheduler-metric", names.leakage("val")])
    stopped = asha_stops(tune_config(space, args, eval_every=3).scheduler, names.leakage("val"), worse_each=1.0)
    assert stopped and 0 not in {i for _, i in stopped}  # leakage: lower is better


def test_optuna_runs_as_many_trials_at_once_as_the_cluster_holds():
    from marl.tuner import tune_config

    space = search_spaces.load("optuna")
    assert tune_config(space, parse_args(["--space", "optuna"]), capacity=7).search_alg.max_concurrent == 7
    args = parse_args(["--space", "optuna", "--max-concurrent", "3"])
    assert tune_config(space, args, capacity=7).search_alg.max_concurrent == 3


def test_the_cost_estimate_counts_rounds_steps_and_evaluations(tiny_cfg):
    from marl.cost import SWEEP_SECONDS, TRIAL_SECONDS, Estimate, eval_seconds, trial_cost

    cfg = tiny_cfg.replace(n_train_pairs=4096, batch_size=256, epochs=15, eval_every=0)
    t = trial_cost([cfg], 0.1)
    assert (t.steps, t.evaluations, t.members) == (240, 1, 1) and t.eval_seconds == eval_seconds(cfg)
    e = Estimate([t] * 30, capacity=2)
    assert e.waves == 15 and e.total_seconds == pytest.approx(SWEEP_SECONDS + 15 * (TRIAL_SECONDS + 24.0 + eval_seconds(cfg)))
    t = trial_cost([cfg.replace(eval_every=5)] * 4, 0.1, eval_factor=2.0)  # at 5, 10 and 15, 4 members
    assert t.evaluations == 3 and t.seconds == pytest.approx(TRIAL_SECONDS + 24 + 12 * 2 * eval_seconds(cfg))
    assert Estimate([t] * 3, capacity=2).waves == 2


def test_the_sweeps_estimate_costs_each_trial_at_its_own_size_and_kind(tiny_cfg, monkeypatch):
    from marl import cost

    timed = []
    monkeypatch.setattr(cost, "_time_steps", lambda kinds, device, threads: timed.extend(kinds) or
                        [0.01 * c[0].batch_size / 64 for c in kinds])  # a step at 10 ms per 64 clips
    small, big = tiny_cfg, tiny_cfg.replace(batch_size=128)
    trials = [[small], [small.replace(gamma=0.5, epochs=6)], [big], [small.replace(compile=True)]]
    line, seconds = cost.sweep_estimate(trials, capacity=2, cpus_per_trial=1, gpus=0)
    assert [c[0].batch_size for c in timed] == [64, 128]  # one timing per kind, compile off
    assert not any(c[0].compile for c in timed)
    share = cost.CPU_CONTENTION
    for cfgs, got, step in zip(trials, seconds, [0.01, 0.01, 0.02, 0.01 / cost.COMPILE_SPEEDUP]):
        assert got == pytest.approx(cost.trial_cost(cfgs, step * share, share).seconds)
    assert seconds[1] > seconds[0]  # 6 epochs against 2
    assert "4 trials of ~" in line and "2 kind(s)" in line
    line, (alone,) = cost.sweep_estimate(trials[:1], capacity=2, cpus_per_trial=1, gpus=0)
    assert alone == pytest.approx(cost.trial_cost(trials[0], 0.01).seconds)  # nothing shares the cores
    assert "1 round(s) of" in line


@pytest.mark.parametrize("seconds, capacity, finish", [
    ([10, 1, 1, 1], 2, 10),  # the long one holds a slot while the other slot runs the rest
    ([3, 3, 2, 2, 2], 2, 7),  # 3+2+2 and 3+2, each trial started when a slot frees
    ([1, 1, 10], 2, 11),  # in order: the long one starts only when the first short one ends
    ([5, 5, 5], 8, 5),
    ([4], 1, 4),
])
def test_trials_of_different_sizes_finish_when_the_last_slot_does(seconds, capacity, finish):
    from marl.cost import finish_seconds

    assert finish_seconds(seconds, capacity) == finish


def test_a_step_is_timed_once_per_kind_of_trial(tiny_cfg):
    from marl.cost import step_key

    same = [tiny_cfg.replace(gamma=g, seed=s, epochs=e, n_train_pairs=n, lr=lr)
            for g, s, e, n, lr in [(0.0, 0, 2, 256, 1e-3), (0.5, 3, 9, 512, 4e-3)]]
    assert step_key([same[0]]) == step_key([same[1]])
    for differs in (tiny_cfg.replace(batch_size=128), tiny_cfg.replace(arch="conv"), tiny_cfg.replace(estimator="mws")):
        assert step_key([differs]) != step_key([tiny_cfg])
    assert step_key([tiny_cfg, tiny_cfg]) != step_key([tiny_cfg])  # two members step twice the work


def test_the_progress_eta_weighs_finished_trials_by_their_estimated_cost(monkeypatch, capsys):
    from types import SimpleNamespace

    from marl import progress

    short, long_ = {"epochs": 2}, {"epochs": 6}
    trials = [SimpleNamespace(trial_id="a", status="RUNNING", config={"trial": short}),
              SimpleNamespace(trial_id="b", status="RUNNING", config={"trial": long_})]
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    weights = {progress.trial_key(short): 10.0, progress.trial_key(long_): 30.0}
    for expected, work, eta in [(weights, 40.0, "30s"),
                                (weights, 50.0, "40s"),  # a repeat of the short trial is still to come
                                ({}, 0.0, "10s")]:  # no estimate: every trial counts as one
        now[0] = 100.0
        lines = progress.ProgressLines(2, expected, work)
        now[0] = 110.0  # the short trial ends after 10 s
        lines.on_trial_complete(1, trials, trials[0])
        assert f"[1/2 done, 1 running, ETA {eta}," in capsys.readouterr().out


def test_every_trial_tune_runs_finds_its_estimate_repeats_included():
    from marl.plan import expand_grid, grid_param_space
    from marl.progress import expected_seconds, trial_key

    trials = [{"epochs": 2, "gamma": g, "seed": 0} for g in (0.0, 0.5)] * 2  # --num-samples 2
    weights = expected_seconds(grid_param_space(trials), [1.0, 2.0, 1.0, 2.0])
    assert [weights[trial_key(c["trial"])] for c in expand_grid(grid_param_space(trials))] == [1.0, 2.0, 1.0, 2.0]
    assert expected_seconds(grid_param_space(trials[:1]), [1.0]) == {}  # one trial: no axis


def test_gpu_share_splits_the_gpus_over_the_trials_that_run_at_once():
    from marl.plan import gpu_share

    assert gpu_share(1, 16, n_trials=1, cpus_per_trial=1) == 1.0  # one packed trial: the whole GPU
    assert gpu_share(1, 16, n_trials=3, cpus_per_trial=1) == pytest.approx(1 / 3)
    assert gpu_share(1, 16, n_trials=30, cpus_per_trial=1) == pytest.approx(1 / 16)  # CPUs bound it
    assert gpu_share(1, 16, n_trials=30, cpus_per_trial=4) == pytest.approx(1 / 4)
    assert gpu_share(4, 16, n_trials=2, cpus_per_trial=1) == 1.0  # never more than one GPU
    assert gpu_share(2, 16, n_trials=5, cpus_per_trial=1) == pytest.approx(1 / 3)  # rounded down to 1/m


def test_auto_pack_is_capped_and_shrinks_when_members_need_more_memory():
    from marl.config import Config
    from marl.plan import PACK_CAP, auto_pack

    assert auto_pack(Config()) == PACK_CAP
    big = auto_pack(Config(batch_size=4096, n_train_pairs=8192, latent_dim=32))
    assert 1 <= big < PACK_CAP


def test_a_trial_trains_on_the_gpu_ray_gave_it_and_only_then(monkeypatch):
    import ray

    from marl.trainable import trial_device

    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    assert trial_device("auto").type == "cpu"  # even where CUDA is visible but not granted
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    assert trial_device("auto").type == "cuda"
    assert trial_device("cpu").type == "cpu"


YAML_GRID = """
description: reconstruction only against gamma 0.5, two seeds
space:
  point: {grid: [{alpha: 0.0, gamma: 0.0}, {gamma: 0.5}]}
  seed: {grid: [0, 1]}
  hidden: 32
base: {epochs: 3}
num_trials: 4
"""


def test_yaml_and_json_spaces_load_like_python_ones(tmp_path):
    import json

    from ray.tune.search.sample import Categorical, Float

    path = tmp_path / "mine.yaml"
    path.write_text(YAML_GRID)
    space = search_spaces.load(str(path))
    trials = grid_trials(space, parse_args(["--space", str(path)]))
    assert space.name == "mine" and count_trials(space) == space.num_trials == len(trials) == 4
    assert sorted((t["gamma"], t["seed"]) for t in trials) == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
    assert {t["epochs"] for t in trials} == {3} and {t["hidden"] for t in trials} == {32}
    path = tmp_path / "search.json"
    path.write_text(json.dumps({"search": "optuna", "num_samples": 3, "metrics": [names.SELECTION],
                                "modes": ["max"], "space": {"gamma_log10": {"uniform": [-3, 0]},
                                                            "latent_dim": {"choice": [4, 8]}}}))
    space = search_spaces.load(str(path))
    assert isinstance(space.space["gamma_log10"], Float) and space.space["gamma_log10"].lower == -3
    assert isinstance(space.space["latent_dim"], Categorical) and count_trials(space) == 3


@pytest.mark.parametrize("name,text,needle", [
    ("broken.yaml", "space: {gamma: [0.0,\n", "cannot parse"),
    ("list.yaml", "- gamma\n", "mapping"),
    ("typo.yaml", "spaec: {gamma: 0.1}\nspace: {}\n", "spaec"),
    ("short.yaml", "space: {lr: {uniform: [0.1]}}\n", "uniform"),
    ("zero.yaml", "space: {lr: {loguniform: [0, 1]}}\n", "loguniform"),
    ("bad.json", '{"space": {"gamma": {"grid": [-1.0]}}}', "gamma"),
    ("space.txt", "SPACE = {}\n", "YAML"),
])
def test_broken_space_files_of_any_kind_give_one_line_and_exit_2(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    proc = in_process("marl.sweep", "--space", path, "--storage", tmp_path / "r", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_the_driver_builds_each_dataset_once_before_the_trials(tiny_cfg, tmp_path, monkeypatch, capsys):
    from marl.data import cache_path
    from marl.data import prebuild as prebuild_data

    monkeypatch.setenv("MARL_CACHE", str(tmp_path))
    base = tiny_cfg
    cfgs = [base, base.replace(gamma=1.0, seed=3), base.replace(data_seed=1)]  # two datasets
    prebuild_data(cfgs)
    assert "2 dataset(s) built" in capsys.readouterr().out
    assert all(cache_path(c).exists() for c in cfgs)
    prebuild_data(cfgs)  # cached: nothing to do
    assert capsys.readouterr().out == ""


def test_resume_refuses_flags_the_restored_sweep_would_ignore():
    import dataclasses
    import json

    from marl.errors import UserError
    from marl.resume import check_resume_flags

    recorded = json.loads(json.dumps(dataclasses.asdict(parse_args(["--pack", "30", "--set", "epochs=3"]))))
    check_resume_flags(parse_args(["--resume"]), recorded)  # defaults: the original values stand
    check_resume_flags(parse_args(["--resume", "--pack", "30", "--set", "epochs=3"]), recorded)  # the same
    check_resume_flags(parse_args(["--resume", "--cpus-per-trial", "2", "--checkpoint-every", "1"]), recorded)
    for argv, needle in ((["--pack", "4"], "--pack 30"), (["--set", "epochs=5"], "--set epochs=3"),
                         (["--config", "c.yaml"], "--config (not given)"), (["--max-failures", "3"], "--max-failures 1")):
        with pytest.raises(UserError, match="cannot change on resume") as err:
            check_resume_flags(parse_args(["--resume", *argv]), recorded)
        assert needle in str(err.value)


def test_resume_with_a_changed_pack_exits_2_and_leaves_the_sweep_alone(smoke_sweep):
    tmp_path, _ = smoke_sweep
    results = tmp_path / "results" / "smoke" / "results.parquet"
    before = results.stat().st_mtime_ns
    proc = in_process("marl.sweep", "--space", "smoke", "--storage", tmp_path / "results", "--resume", "--pack", "2",
                      cwd=tmp_path)
    assert proc.returncode == 2 and "--pack" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and results.stat().st_mtime_ns == before


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_unwritable_storage_is_one_line_before_ray_starts(tmp_path, where):
    if where == "under_a_file":
        (tmp_path / "afile").write_text("x")
        storage = str(tmp_path / "afile" / "results")
    else:
        storage = "/proc/marl-results"  # read-only even for root, who can write past chmod
    proc = in_process("marl.sweep", "--space", "smoke", "--storage", storage, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: storage:"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "ray" not in proc.stdout.lower()


def test_checkpoints_on_cluster_storage_are_recorded_as_uris():
    from types import SimpleNamespace

    from marl.results import checkpoint_uri

    def ckpt(kind, path):
        return SimpleNamespace(filesystem=SimpleNamespace(type_name=kind), path=path)

    assert checkpoint_uri(ckpt("local", "/r/smoke/trial_1/checkpoint_000002")) == "/r/smoke/trial_1/checkpoint_000002"
    # a local folder's storage is marl.storage's crash-safe filesystem: still a plain path
    assert checkpoint_uri(ckpt("py::marl-atomic-local", "/r/smoke/trial_1/c")) == "/r/smoke/trial_1/c"
    assert checkpoint_uri(ckpt("s3", "bucket/smoke/trial_1/c")) == "s3://bucket/smoke/trial_1/c"
    assert checkpoint_uri(ckpt("gcs", "bucket/smoke/trial_1/c")) == "gs://bucket/smoke/trial_1/c"


@pytest.mark.timeout(600)
def test_the_separation_space_runs_end_to_end_on_smoke_data(tmp_path):
    # the shipped space's 10 objectives with one seed of its 3 (the 30 trials' count is checked
    # above): packed 5 to a trial, 2 trials, one round on 2 CPUs
    space = tmp_path / "separation.py"
    space.write_text("from ray import tune\nfrom search_spaces.separation import *\n"
                     "SPACE = {**SPACE, 'seed': tune.grid_search([0])}\nNUM_TRIALS = 10\n")
    proc = sweep_cli("--space", str(space), "--storage", str(tmp_path / "r"), "--pack", "5",
                     "--num-cpus", "2", *tiny_sets(epochs=1), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 trial(s)" in proc.stdout and "up to 5 configurations packed per trial" in proc.stdout
    df = pd.read_parquet(tmp_path / "r" / "separation" / "results.parquet")
    assert len(df) == 10 and set(df["status"]) == {"ok"}
    assert sorted(df["config/ablation"].unique()) == sorted(
        ["none", "swap", "infonce", "orthogonal", "all", "none+gamma", "swap+gamma", "infonce+gamma",
         "orthogonal+gamma", "all+gamma"])
    every = df[df["config/ablation"] == "all"].iloc[0]
    assert (every["config/swap"], every["config/infonce"], every["config/orthogonal"]) == (1.0, 1.0, 1.0)
    assert df[["loss/infonce", "loss/orthogonal"]].notna().all().all()  # reported per trial
    assert df.loc[df["config/swap"] > 0, "loss/swap"].notna().all()  # computed where weighed
