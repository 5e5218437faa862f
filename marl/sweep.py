"""Run a study as a Ray Tune sweep: `python -m marl.sweep [--space NAME|PATH] ...`.

On a laptop it starts an embedded Ray; with `--address auto` the same command runs on a
cluster. At the end it writes `<storage>/<name>/results.parquet` (one row per configuration,
errored ones included) and `<storage>/<name>/epochs.parquet` (every report), and prints a summary.

GPUs are used by default: with `--gpus-per-trial auto` each trial gets a share of the cluster's
GPUs when it has any (and trains and evaluates on CUDA), and the CPU otherwise. With `--pack auto`
grid points that differ only in alpha/beta/gamma/seed train together as one batched model per
trial (up to PACK_CAP) when trials get GPUs; on CPUs packing does not pay (docs/performance.md)
and each configuration is its own trial. Every configuration is resolved before Ray starts,
so each trial's config (Ray's table, `ResultGrid`) holds exactly the values it trains with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import search_spaces
from marl import names
from marl.cli import ArgumentParser
from marl.errors import UserError, exit_on_user_error
from marl.files import hold_lock
from marl.plan import (PACK_CAP, auto_pack, gpu_share, grid_configs, grid_param_space, optuna_param_space,
                       pack_trials, trials_at_once)
from marl.results import (EPOCHS_FILE, RESULTS_FILE, is_uri, read_text, results_frames, summary_table,
                          write_parquet, write_text)
from marl.resume import ARGS_FILE, check_resume_flags, check_storage, experiment_dir
from marl.storage import atomic_local_filesystem, remove_partial_files
from marl.trial import configs as trial_configs
from marl.tuner import callbacks, mlflow_uri, tune_config

AUTO = "auto"
_LOCK = None  # this driver's lock on its sweep name (held until the process ends)


@dataclass
class SweepArgs:
    """The flags of `python -m marl.sweep`, validated in `parse_args`."""

    space: str = "paper_ablation"  # a name in search_spaces/ or a path to a .py file
    storage: str = "./results"  # a folder, or a URI (s3://, gs://) shared by the cluster
    name: str = ""  # experiment name; default: the space's name
    num_samples: int = 0  # grid repeats or Optuna trials; 0 = the space's own
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | str = AUTO  # auto: a share of a GPU when the cluster has GPUs, else 0
    pack: int | str = AUTO  # configurations per trial; auto: up to PACK_CAP on GPUs, 1 on CPUs
    address: str = ""  # "" = embedded local Ray; "auto" joins a running cluster
    num_cpus: int = 0  # CPUs of the embedded Ray; 0 = all
    search: str = ""  # grid | optuna; default: the space's own
    scheduler: str = "none"  # none | asha (early-stops on scheduler_metric; needs eval_every)
    scheduler_metric: str = names.SELECTION  # what ASHA compares: a validation figure by default
    scheduler_mode: str = ""  # max | min; default: min for loss/ and leakage/ metrics, else max
    max_concurrent: int = 0  # 0 = as many as resources allow
    max_failures: int = 1  # retries of a failed trial, from its last checkpoint
    checkpoint_every: int = 5  # epochs between checkpoints (also at evaluations and the end)
    keep_checkpoints: int = 2  # newest checkpoints kept per trial
    resume: bool = False
    overwrite: bool = False
    config: str = ""  # JSON/YAML file of config fields for every trial (over the space's BASE)
    sets: tuple = ()  # key=value config overrides for every trial (over everything)
    log: str = ""  # "" | mlflow: also track every configuration as an MLflow run
    mlflow_uri: str = ""  # MLflow tracking URI; default: sqlite:///<sweep folder>/mlflow.db
    verbose: bool = False  # Ray's own console (trial tables, config boxes) instead of one line per event


def auto_or(kind, flag: str):
    """argparse type: the word auto, or a number of the given kind."""
    def parse(text: str):
        if text == AUTO:
            return AUTO
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None
    parse.__name__ = flag
    return parse


def parse_args(argv=None) -> SweepArgs:
    p = ArgumentParser(prog="python -m marl.sweep", description=__doc__.split("\n")[0])
    d = SweepArgs()
    p.add_argument("--space", default=d.space, help="search space name or .py path (default: %(default)s)")
    p.add_argument("--storage", default=d.storage, help="results folder or URI (default: %(default)s)")
    p.add_argument("--name", default=d.name, help="experiment name (default: the space's name)")
    p.add_argument("--num-samples", type=int, default=d.num_samples)
    p.add_argument("--cpus-per-trial", type=float, default=d.cpus_per_trial)
    p.add_argument("--gpus-per-trial", type=auto_or(float, "gpus"), default=d.gpus_per_trial,
                   help="GPUs per trial; 'auto' (default): a share of the cluster's GPUs when it has "
                        "any, so trials train on CUDA, else 0 and they train on the CPU")
    p.add_argument("--address", default=d.address, help="Ray address; 'auto' joins a running cluster")
    p.add_argument("--num-cpus", type=int, default=d.num_cpus, help="CPUs of the embedded Ray (0: all)")
    p.add_argument("--search", choices=["grid", "optuna"], default=d.search or None)
    p.add_argument("--scheduler", choices=["none", "asha"], default=d.scheduler)
    p.add_argument("--scheduler-metric", default=d.scheduler_metric, metavar="METRIC",
                   help="metric ASHA stops trials on (default: %(default)s, validation clips; a "
                        "loss/<term> is also allowed, but loss-based stopping favours small α/β/γ)")
    p.add_argument("--scheduler-mode", choices=["max", "min"], default=None,
                   help="default: min for loss/ and leakage/ metrics, max otherwise")
    p.add_argument("--max-concurrent", type=int, default=d.max_concurrent,
                   help="trials at once (0: as many as resources allow; Optuna: the cluster's capacity)")
    p.add_argument("--max-failures", type=int, default=d.max_failures)
    p.add_argument("--pack", type=auto_or(int, "pack"), default=d.pack, metavar="K",
                   help=f"train up to K grid points that differ only in alpha/beta/gamma/seed as one "
                        f"batched model per trial; 'auto' (default): up to {PACK_CAP} when trials get "
                        "GPUs (grid search, no scheduler), 1 on CPUs, where packing does not pay")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="N",
                   help="epochs between checkpoints; evaluations and the last epoch always save "
                        "(default: %(default)s)")
    p.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, metavar="N",
                   help="newest checkpoints kept per trial (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted sweep of this name")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sweep of this name")
    p.add_argument("--config", default=d.config, metavar="FILE",
                   help="JSON or YAML file of config fields for every trial, e.g. configs/paper_scale.yaml "
                        "(over the space's fixed fields; the space's axes and --set win over it)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field for every trial (repeatable)")
    p.add_argument("--log", choices=["mlflow"], default=None,
                   help="also track every configuration as its own MLflow run (pip install -e '.[mlflow]'); "
                        "TensorBoard events are always written into each trial's folder")
    p.add_argument("--mlflow-uri", default=d.mlflow_uri, metavar="URI",
                   help="MLflow tracking URI (default: sqlite:///<storage>/<name>/mlflow.db, or "
                        "./mlflow.db when storage is a URI)")
    p.add_argument("--verbose", action="store_true",
                   help="Ray's full console (trial tables, config boxes, checkpoint lines)")
    a = vars(p.parse_args(argv))
    args = SweepArgs(**{k: (tuple(v) if k == "sets" else v) for k, v in a.items() if v is not None})
    for name in ("num_samples", "num_cpus", "max_concurrent", "max_failures"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')}: must be >= 0")
    if not (math.isfinite(args.cpus_per_trial) and args.cpus_per_trial > 0):
        raise UserError("--cpus-per-trial: must be > 0")
    if args.gpus_per_trial != AUTO and not (math.isfinite(args.gpus_per_trial) and args.gpus_per_trial >= 0):
        raise UserError("--gpus-per-trial: must be 'auto' or a number >= 0")
    if args.pack != AUTO and args.pack < 1:
        raise UserError("--pack: must be 'auto' or >= 1")
    for name in ("checkpoint_every", "keep_checkpoints"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}: must be >= 1")
    allowed = set(names.eval_scalars()) | {names.loss(t) for t in names.LOSS_TERMS}
    if args.scheduler_metric not in allowed:
        raise UserError(f"--scheduler-metric: unknown metric {args.scheduler_metric!r}; e.g. "
                        f"{names.SELECTION}, {names.leakage('val')}, {names.loss('recon')}")
    if not args.scheduler_mode:
        args.scheduler_mode = "min" if args.scheduler_metric.startswith(("loss/", "leakage/")) else "max"
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    if args.mlflow_uri and args.log != "mlflow":
        raise UserError("--mlflow-uri: needs --log mlflow")
    return args


# ---------------------------------------------------------------- run
def run(args: SweepArgs) -> pd.DataFrame:
    space = search_spaces.load(args.space)
    if args.search:
        space.search = args.search
    if space.search == "optuna" and not space.metrics:
        raise UserError("--search optuna: this space defines no METRICS/MODES to optimise")
    if space.search == "optuna" and args.scheduler != "none":
        # ASHA would stop trials before the final evaluation, and Optuna would be told their
        # missing or early scores as final ones: a biased search. Refuse rather than mislead.
        raise UserError("--scheduler: early stopping does not combine with the optuna search here")
    args.name = args.name or space.name
    exp_dir = experiment_dir(args.storage, args.name)
    packing_allowed = space.search == "grid" and args.scheduler == "none"
    if args.pack not in (AUTO, 1) and not packing_allowed:
        raise UserError("--pack: works with grid search and no scheduler only")
    # everything a user can get wrong is checked here, before Ray starts
    planned = grid_configs(space, args) if space.search == "grid" else None
    trials = [{**cfg.to_dict(), **labels} for cfg, labels in planned] if planned else None
    param_space = optuna_param_space(space, args) if trials is None else None
    eval_every = (trials[0] if trials else param_space).get("eval_every", 0)
    if args.scheduler == "asha" and not eval_every:
        raise UserError("--scheduler asha: stops trials on validation separation, which needs "
                        "evaluations during training; add --set eval_every=N")
    check_storage(args, exp_dir)
    if args.resume:
        recorded = read_text(f"{exp_dir}/{ARGS_FILE}")
        check_resume_flags(args, json.loads(recorded) if recorded else {})
    if not is_uri(args.storage):  # one driver per sweep name: a second one must not mix in
        global _LOCK
        _LOCK = hold_lock(Path(args.storage) / f".{args.name}.lock", f"a sweep named {args.name!r}")

    if trials is not None and not args.address and not args.resume:
        from marl.data import prebuild  # torch: only once the flags are known to be good

        prebuild([cfg for cfg, _ in planned])

    import ray
    from ray import tune

    from marl.trainable import marl_trainable

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    # trials checkpoint often on purpose (resume loses few epochs): no warning for it
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Snapshot the experiment state after every result, not every ~10 s: a stale snapshot can
    # name a trial checkpoint that num_to_keep has deleted since, and Tune then refuses to
    # resume that trial ("does not exist on storage anymore"; ray-project/ray#27790).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    if not args.verbose:  # Ray's legacy console at verbose=0 prints nothing (the new one still
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # prints its header): marl.progress speaks
    if not ray.is_initialized():
        # "local": a new embedded Ray even when another one runs on this machine (a `ray start`
        # or a test cluster); without it ray.init joins that one, and refuses num_cpus
        init = {"address": args.address} if args.address else {"address": "local", "num_cpus": args.num_cpus or None}
        # Ray 2.60 turns token authentication on for a new local cluster, and says so in a warning
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(include_dashboard=False, logging_level="WARNING", **init)
    cluster = ray.cluster_resources()
    cluster_gpus, cluster_cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 1.0)
    if trials is not None:
        pack = args.pack
        if pack == AUTO:
            pack = auto_pack(planned[0][0]) if cluster_gpus and packing_allowed else 1
        trials = pack_trials(trials, pack)
        param_space = grid_param_space(trials)
    n_trials = len(trials) if trials is not None else (args.num_samples or space.num_samples)
    gpus = args.gpus_per_trial
    if gpus == AUTO:
        gpus = gpu_share(cluster_gpus, cluster_cpus, n_trials, args.cpus_per_trial) if cluster_gpus else 0.0
    capacity = min(trials_at_once(cluster_cpus, args.cpus_per_trial), args.max_concurrent or math.inf)
    if gpus:
        capacity = max(1, min(capacity, int(round(cluster_gpus / gpus, 6))))
    print(f"{n_trials} trial(s), {args.cpus_per_trial:g} CPU and {gpus:g} GPU each"
          + (f", up to {pack} configurations packed per trial" if trials is not None and pack > 1 else "")
          + f" (cluster: {cluster_cpus:g} CPUs, {cluster_gpus:g} GPUs)")
    seconds = []  # each trial's estimate, for the console's ETA
    if trials is not None and not args.address and not args.resume:  # trials run here: time them here
        from marl.cost import sweep_estimate

        line, seconds = sweep_estimate([trial_configs(t) for t in trials], capacity, args.cpus_per_trial, gpus)
        print(line)
    trainable = tune.with_resources(
        tune.with_parameters(marl_trainable, checkpoint_every=args.checkpoint_every, verbose=args.verbose),
        {"cpu": args.cpus_per_trial, "gpu": gpus})
    started = time.perf_counter()
    # Local folders get every file whole or not at all (marl.storage); object stores already do.
    storage_fs = None if is_uri(args.storage) else atomic_local_filesystem()
    if args.resume:
        if storage_fs is not None:
            remove_partial_files(Path(exp_dir))
        tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_errored=True,
                                   storage_filesystem=storage_fs)
    else:
        if Path(exp_dir).exists() and args.overwrite and not is_uri(exp_dir):
            import shutil

            shutil.rmtree(exp_dir)
        write_text(f"{exp_dir}/{ARGS_FILE}", json.dumps(dataclasses.asdict(args), indent=2))
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune_config(space, args, eval_every, capacity, exp_dir),
            run_config=tune.RunConfig(
                name=args.name,
                storage_path=args.storage if is_uri(args.storage) else str(Path(args.storage).resolve()),
                storage_filesystem=storage_fs,
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=args.keep_checkpoints),
                callbacks=callbacks(args, n_trials, exp_dir, seconds, param_space), verbose=1 if args.verbose else 0))
    grid = tuner.fit()
    df, epochs = results_frames(grid)
    write_parquet(df, f"{exp_dir}/{RESULTS_FILE}")
    write_parquet(epochs, f"{exp_dir}/{EPOCHS_FILE}")
    print(f"\n{len(df)} configurations ({(df['status'] == 'ok').sum()} ok, {(df['status'] == 'error').sum()} errored, "
          f"{(df['status'] == names.DIVERGED).sum()} diverged) in {time.perf_counter() - started:.0f} s")
    print(summary_table(df))
    print(f"\nresults:     {exp_dir}/{RESULTS_FILE}  (pandas.read_parquet)")
    print(f"report:      python -m analysis.report {exp_dir} --out report")
    print(f"tensorboard: tensorboard --logdir {exp_dir}")
    if args.log == "mlflow":
        print(f"mlflow:      mlflow ui --backend-store-uri {mlflow_uri(args, exp_dir)}")
    return df


def main(argv=None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    exit_on_user_error(main)
