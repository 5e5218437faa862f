"""What a sweep hands Ray Tune besides its trials: the search and scheduler (`tune_config`),
and the callbacks (the console's lines, MLflow runs)."""

from __future__ import annotations

from pathlib import Path

from marl.results import is_uri


def mlflow_uri(args, exp_dir: str) -> str:
    if args.mlflow_uri:
        return args.mlflow_uri
    folder = Path.cwd() if is_uri(exp_dir) else Path(exp_dir)
    return f"sqlite:///{folder / 'mlflow.db'}"


def callbacks(args, n_trials: int, exp_dir: str, seconds: list[float] | None = None, param_space=None) -> list:
    """The console's one line per trial event (Ray's own with --verbose; its ETA weighs each
    trial of the grid `param_space` by its estimated `seconds`), and MLflow runs."""
    from marl.progress import ProgressLines, expected_seconds

    weights = expected_seconds(param_space, seconds) if seconds and param_space else {}
    out = [] if args.verbose else [ProgressLines(n_trials, weights, sum(seconds or []))]
    if args.log == "mlflow":
        from marl.tracking import MlflowRuns

        out.append(MlflowRuns(mlflow_uri(args, exp_dir), args.name))
    return out


OPTUNA_JOURNAL = "optuna.journal"


def tune_config(space, args, eval_every: int = 0,
                capacity: int = 2, exp_dir: str = ""):
    """Search and scheduler. Optuna runs `capacity` trials at once (what the cluster holds)
    unless --max-concurrent says otherwise, and keeps its study in `<exp_dir>/optuna.journal`
    (local storage), where `optuna-dashboard` can open it."""
    from ray import tune

    # a grid's repeats are already among its trials (marl.plan.grid_configs)
    num_samples = 1 if space.search == "grid" else (args.num_samples or space.num_samples)
    search_alg = scheduler = None
    if space.search == "optuna":
        from optuna.samplers import NSGAIISampler
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        storage = None
        if exp_dir and not is_uri(exp_dir):
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            Path(exp_dir).mkdir(parents=True, exist_ok=True)
            storage = JournalStorage(JournalFileBackend(str(Path(exp_dir) / OPTUNA_JOURNAL)))
        multi = len(space.metrics) > 1
        searcher = OptunaSearch(metric=space.metrics if multi else space.metrics[0],
                                mode=space.modes if multi else space.modes[0],
                                sampler=NSGAIISampler(seed=0) if multi else None,
                                storage=storage, study_name=args.name or space.name)
        search_alg = ConcurrencyLimiter(searcher, max_concurrent=args.max_concurrent or capacity)
    if args.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # Validation separation exists at evaluation epochs only: rungs at multiples of
        # eval_every (grace period eval_every, reduction factor 4) always land on one.
        scheduler = ASHAScheduler(time_attr="epoch", metric=args.scheduler_metric, mode=args.scheduler_mode,
                                  grace_period=max(1, eval_every), reduction_factor=4)
    # reuse_actors: a finished trial's worker process takes the next trial, so each trial does not
    # pay a new process's start (torch, Tune and sklearn imported, ~4 s on a 2-core CPU). Nothing
    # carries over: every random draw of a trial comes from generators seeded by its config
    return tune.TuneConfig(num_samples=num_samples, search_alg=search_alg, scheduler=scheduler,
                           max_concurrent_trials=args.max_concurrent or None,
                           trial_dirname_creator=short_trial_name, reuse_actors=True)


def short_trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"  # Ray's default spells the whole config out
