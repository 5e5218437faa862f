"""Run a study as a Ray Tune sweep: `python -m marl.sweep [--space NAME|PATH] ...`.

On a laptop it starts an embedded Ray; with `--address auto` the same command runs on a
cluster. At the end it writes `<storage>/<name>/results.parquet` (one row per trial, errored
ones included) and `<storage>/<name>/epochs.parquet` (every report), and prints a summary.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

import search_spaces
from marl import names
from marl.cli import ArgumentParser, parse_key_values
from marl.config import Config
from marl.errors import UserError, exit_on_user_error
from marl.files import check_writable, replace_atomically

RESULTS_FILE = "results.parquet"
EPOCHS_FILE = "epochs.parquet"
SUMMARY_COLUMNS = [names.probe("private", "timbre"), names.probe("shared", "timbre"),
                   names.probe("private", "pitch"), names.probe("shared", "pitch"), names.SEPARATION]


@dataclass
class SweepArgs:
    """The flags of `python -m marl.sweep`, validated in `parse_args`."""

    space: str = "paper_ablation"  # a name in search_spaces/ or a path to a .py file
    storage: str = "./results"  # a folder, or a URI (s3://, gs://) shared by the cluster
    name: str = ""  # experiment name; default: the space's name
    num_samples: int = 0  # grid repeats or Optuna trials; 0 = the space's own
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractions pack several trials on one GPU
    address: str = ""  # "" = embedded local Ray; "auto" joins a running cluster
    num_cpus: int = 0  # CPUs of the embedded Ray; 0 = all
    search: str = ""  # grid | optuna; default: the space's own
    scheduler: str = "none"  # none | asha (early-stops on validation separation; needs eval_every)
    max_concurrent: int = 0  # 0 = as many as resources allow
    max_failures: int = 1  # retries of a failed trial, from its last checkpoint
    fuse: int = 1  # train up to K compatible grid points as one fused model per trial
    resume: bool = False
    overwrite: bool = False
    config: str = ""  # JSON/YAML file of config fields for every trial (over the space's BASE)
    sets: tuple = ()  # key=value config overrides for every trial (over everything)


def parse_args(argv=None) -> SweepArgs:
    p = ArgumentParser(prog="python -m marl.sweep", description=__doc__.split("\n")[0])
    d = SweepArgs()
    p.add_argument("--space", default=d.space, help="search space name or .py path (default: %(default)s)")
    p.add_argument("--storage", default=d.storage, help="results folder or URI (default: %(default)s)")
    p.add_argument("--name", default=d.name, help="experiment name (default: the space's name)")
    p.add_argument("--num-samples", type=int, default=d.num_samples)
    p.add_argument("--cpus-per-trial", type=float, default=d.cpus_per_trial)
    p.add_argument("--gpus-per-trial", type=float, default=d.gpus_per_trial)
    p.add_argument("--address", default=d.address, help="Ray address; 'auto' joins a running cluster")
    p.add_argument("--num-cpus", type=int, default=d.num_cpus, help="CPUs of the embedded Ray (0: all)")
    p.add_argument("--search", choices=["grid", "optuna"], default=d.search or None)
    p.add_argument("--scheduler", choices=["none", "asha"], default=d.scheduler)
    p.add_argument("--max-concurrent", type=int, default=d.max_concurrent)
    p.add_argument("--max-failures", type=int, default=d.max_failures)
    p.add_argument("--fuse", type=int, default=d.fuse, metavar="K",
                   help="pack up to K grid points that differ only in alpha/beta/gamma/seed into one "
                        "trial, trained as one batched model (default: 1, no fusing)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted sweep of this name")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sweep of this name")
    p.add_argument("--config", default=d.config, metavar="FILE",
                   help="JSON or YAML file of config fields for every trial, e.g. configs/paper_scale.yaml "
                        "(over the space's fixed fields; the space's axes and --set win over it)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field for every trial (repeatable)")
    a = vars(p.parse_args(argv))
    args = SweepArgs(**{k: (tuple(v) if k == "sets" else v) for k, v in a.items() if v is not None})
    for name in ("num_samples", "num_cpus", "max_concurrent", "max_failures"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')}: must be >= 0")
    if not (math.isfinite(args.cpus_per_trial) and args.cpus_per_trial > 0):
        raise UserError("--cpus-per-trial: must be > 0")
    if not (math.isfinite(args.gpus_per_trial) and args.gpus_per_trial >= 0):
        raise UserError("--gpus-per-trial: must be >= 0")
    if args.fuse < 1:
        raise UserError("--fuse: must be >= 1")
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    return args


def parse_sets(sets) -> dict:
    known = {f.name for f in fields(Config)}
    out = {key.replace("-", "_"): value for key, value in parse_key_values(sets, "--set").items()}
    for key in out:
        if key not in known:
            raise UserError(f"--set: unknown config field {key!r}")
    return out


def build_param_space(space: search_spaces.SearchSpace, args: SweepArgs) -> dict:
    """Every Config field fixed (defaults < space BASE < --config file < --set), then the
    space's axes.

    --set values go in last, under "set", so they win over the axes too; every fixed value and
    every grid point is validated here, before Ray starts.
    """
    sets = parse_sets(args.sets)
    from_file = Config.from_file(args.config) if args.config else {}
    fixed = {"threads": max(1, int(args.cpus_per_trial)), **space.base, **from_file}
    if args.gpus_per_trial == 0:
        fixed.setdefault("device", "cpu")  # a trial Ray gave no GPU must not take one it can see
    fixed = Config.from_dict({**fixed, **sets}).to_dict()
    param_space = {**fixed, **space.space}
    if sets:
        param_space["set"] = {k: fixed[k] for k in sets}
    if space.search == "grid":
        for variant in expand_grid(param_space):
            check_variant(variant)
    return param_space


def fuse_param_space(param_space: dict, k: int) -> dict:
    """Pack the grid's points into groups of <= k compatible ones: one trial per group."""
    from ray import tune

    from marl.fused import fuse_key
    from marl.trainable import MEMBERS, trial_config

    groups: dict[tuple, list[list[dict]]] = {}
    for variant in expand_grid(param_space):
        chunks = groups.setdefault(fuse_key(trial_config(variant)), [[]])
        if len(chunks[-1]) == k:
            chunks.append([])
        chunks[-1].append(variant)
    return {MEMBERS: tune.grid_search([chunk for chunks in groups.values() for chunk in chunks])}


def expand_grid(param_space: dict) -> list[dict]:
    from ray.tune.search.variant_generator import generate_variants

    return [spec["config"] for _, spec in generate_variants({"config": param_space})]


def check_variant(variant: dict) -> None:
    from marl.trainable import trial_config

    known = {f.name for f in fields(Config)} | set(search_spaces.LABEL_KEYS)
    unknown = set(search_spaces.resolve_trial_config(variant)) - known
    if unknown:
        raise UserError(f"space: unknown config field(s) {', '.join(sorted(unknown))}")
    try:
        trial_config(variant)
    except UserError as err:
        raise UserError(f"space: {err}") from None


def count_trials(space: search_spaces.SearchSpace, num_samples: int = 0) -> int:
    n = num_samples or space.num_samples
    if space.search == "optuna":
        return n
    return len(expand_grid(space.space)) * n


# ---------------------------------------------------------------- storage
def is_uri(storage: str) -> bool:
    return "://" in storage


def experiment_dir(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}" if is_uri(storage) else str(Path(storage).resolve() / name)


def write_parquet(df: pd.DataFrame, target: str) -> None:
    """Atomically for local paths (temporary file, then rename); via pyarrow.fs for URIs."""
    if is_uri(target):
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(target)
        with fs.open_output_stream(path) as stream:
            df.to_parquet(stream, index=False)
        return
    replace_atomically(Path(target), lambda tmp: df.to_parquet(tmp, index=False))


def check_storage(args: SweepArgs, exp_dir: str) -> None:
    from ray import tune

    local = not is_uri(args.storage)
    if local:
        check_writable(Path(args.storage), "storage")
    path = Path(exp_dir)
    if args.resume:
        if not tune.Tuner.can_restore(exp_dir):
            hint = (" (its folder exists but holds no saved state: it was stopped before its first "
                    "save; start it again with --overwrite)") if local and path.exists() else ""
            raise UserError(f"--resume: no sweep named {args.name!r} under {args.storage}{hint}")
    elif local and path.exists() and any(path.iterdir()) and not args.overwrite:
        raise UserError(f"a sweep named {args.name!r} already exists under {args.storage}: "
                        "use --resume to finish it, --overwrite to replace it, or --name")


# ---------------------------------------------------------------- results
def flat_config(config: dict) -> dict:
    return {f"config/{k}": v for k, v in search_spaces.resolve_trial_config(config).items()}


METRIC_PREFIXES = ("probe", "separation", "leakage", "mi", "mi_mean", "mi_baseline", "mig", "loss")
METRIC_NAMES = (names.DIVERGED, "diverged_epoch", "epoch", "node")
EPOCH_PREFIXES = ("loss/", "probe/", "separation/", "leakage/", "mi_mean/", "mi_baseline/", "mig/")
EPOCH_NAMES = ("epoch", names.DIVERGED)


def members(config: dict) -> list[tuple[str, dict]]:
    """(metric prefix, config) of each configuration a trial trained: one, or its fused members."""
    from marl.trainable import MEMBERS, member_prefix

    if MEMBERS in config:
        return [(member_prefix(i), m) for i, m in enumerate(config[MEMBERS])]
    return [("", config)]


def unprefixed(mapping: dict, prefix: str) -> dict:
    """A member's own metrics, without its prefix; shared ones (epoch, node) kept."""
    out = {k: v for k, v in mapping.items() if k in ("epoch", "node")}
    out.update({k[len(prefix):]: v for k, v in mapping.items() if k.startswith(prefix)})
    return out


def trial_status(error, metrics: dict) -> str:
    if error is not None:
        return "error"
    if metrics.get(names.DIVERGED):
        return names.DIVERGED
    evaluated = isinstance(metrics.get(names.SEPARATION), float) and not math.isnan(metrics[names.SEPARATION])
    return "ok" if evaluated else "incomplete"


def results_frames(grid) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per configuration (errored trials too) and one row per report."""
    rows, epochs = [], []
    for result in grid:
        trial = Path(result.path).name if result.path else None
        error = None if result.error is None else str(result.error).strip().splitlines()[-1][:500]
        frame = result.metrics_dataframe
        for prefix, config in members(result.config or {}):
            name = f"{trial}/{prefix.rstrip('/')}" if prefix else trial
            metrics = {k: v for k, v in unprefixed(result.metrics or {}, prefix).items()
                       if k.split("/")[0] in METRIC_PREFIXES or k in METRIC_NAMES}
            checkpoint = result.checkpoint.path if result.checkpoint else None
            rows.append({"trial": name, "status": trial_status(result.error, metrics), "error": error,
                         **flat_config(config), **metrics,
                         "checkpoint": f"{checkpoint}/{prefix}".rstrip("/") if checkpoint else None})
            if frame is not None and len(frame):
                own = pd.DataFrame(unprefixed({c: frame[c] for c in frame.columns}, prefix))
                keep = [c for c in own.columns if c.startswith(EPOCH_PREFIXES) or c in EPOCH_NAMES]
                epochs.append(own[keep].assign(trial=name))
    df = pd.DataFrame(rows)
    ep = pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame(columns=["trial", "epoch"])
    if "epoch" in ep:  # a resumed trial may report an epoch again: keep the last report
        ep = ep.drop_duplicates(["trial", "epoch"], keep="last").reset_index(drop=True)
    return df, ep


def summary_table(df: pd.DataFrame) -> str:
    varying = [c for c in df.columns if c.startswith("config/") and c != "config/threads"
               and df[c].astype(str).nunique() > 1]
    cols = ["status", *varying, *[c for c in SUMMARY_COLUMNS if c in df.columns]]
    short = {c: c.replace("config/", "").replace(names.probe_prefix(), "") for c in cols}
    return df[cols].rename(columns=short).to_string(index=False, float_format=lambda v: f"{v:.3f}")


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
    param_space = build_param_space(space, args)
    if args.fuse > 1:
        if space.search != "grid" or args.scheduler != "none":
            raise UserError("--fuse: works with grid search and no scheduler only")
        param_space = fuse_param_space(param_space, args.fuse)
    if args.scheduler == "asha" and not param_space.get("eval_every"):
        raise UserError("--scheduler asha: stops trials on validation separation, which needs "
                        "evaluations during training; add --set eval_every=N")
    check_storage(args, exp_dir)

    import ray
    from ray import tune

    from marl.trainable import marl_trainable

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    # trials checkpoint every epoch on purpose (resume loses at most one epoch): no warning for it
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not ray.is_initialized():
        init = {"address": args.address} if args.address else {"num_cpus": args.num_cpus or None}
        ray.init(include_dashboard=False, logging_level="WARNING", **init)
    trainable = tune.with_resources(marl_trainable, {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial})
    started = time.perf_counter()
    if args.resume:
        tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_errored=True)
    else:
        if Path(exp_dir).exists() and args.overwrite and not is_uri(exp_dir):
            import shutil

            shutil.rmtree(exp_dir)
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune_config(space, args, param_space.get("eval_every", 0)),
            run_config=tune.RunConfig(
                name=args.name,
                storage_path=args.storage if is_uri(args.storage) else str(Path(args.storage).resolve()),
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                verbose=1))
    grid = tuner.fit()
    df, epochs = results_frames(grid)
    write_parquet(df, f"{exp_dir}/{RESULTS_FILE}")
    write_parquet(epochs, f"{exp_dir}/{EPOCHS_FILE}")
    print(f"\n{len(df)} configurations ({(df['status'] == 'ok').sum()} ok, {(df['status'] == 'error').sum()} errored, "
          f"{(df['status'] == names.DIVERGED).sum()} diverged) in {time.perf_counter() - started:.0f} s")
    print(summary_table(df))
    print(f"\nresults: {exp_dir}/{RESULTS_FILE}  (pandas.read_parquet)")
    print(f"report:  python -m analysis.report {exp_dir} --out report")
    return df


def tune_config(space: search_spaces.SearchSpace, args: SweepArgs, eval_every: int = 0):
    from ray import tune

    num_samples = args.num_samples or space.num_samples
    search_alg = scheduler = None
    if space.search == "optuna":
        from optuna.samplers import NSGAIISampler
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        multi = len(space.metrics) > 1
        searcher = OptunaSearch(metric=space.metrics if multi else space.metrics[0],
                                mode=space.modes if multi else space.modes[0],
                                sampler=NSGAIISampler(seed=0) if multi else None)
        search_alg = ConcurrencyLimiter(searcher, max_concurrent=args.max_concurrent or 2)
    if args.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # Validation separation exists at evaluation epochs only: rungs at multiples of
        # eval_every (grace period eval_every, reduction factor 4) always land on one.
        scheduler = ASHAScheduler(time_attr="epoch", metric=names.SELECTION, mode="max",
                                  grace_period=max(1, eval_every), reduction_factor=4)
    return tune.TuneConfig(num_samples=num_samples, search_alg=search_alg, scheduler=scheduler,
                           max_concurrent_trials=args.max_concurrent or None,
                           trial_dirname_creator=short_trial_name)


def short_trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"  # Ray's default spells the whole config out


def main(argv=None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    exit_on_user_error(main)
