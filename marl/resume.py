"""Resuming a sweep: where it lives, which flags may not change, and Tune's saved state checked
before Ray starts, so that a resume Tune would turn into a new, empty sweep is refused instead.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from marl.errors import UserError
from marl.files import check_writable
from marl.results import filesystem, is_uri
from marl.storage import EXPERIMENT_STATE


def experiment_dir(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}" if is_uri(storage) else str(Path(storage).resolve() / name)


ARGS_FILE = "sweep.json"  # the flags a sweep started with, for --resume to check against
# What Tuner.restore keeps from the first run (trials, search, scheduler, failure and checkpoint
# settings): a resume that asks for other values is refused instead of silently ignored.
FIXED_ON_RESUME = ("space", "num_samples", "search", "scheduler", "scheduler_metric",
                   "pack", "config", "sets", "max_concurrent", "max_failures", "keep_checkpoints",
                   "log", "mlflow_uri", "verbose")  # the last three: Tune restores its callbacks


def flag(field: str) -> str:
    return "--set" if field == "sets" else "--" + field.replace("_", "-")


def check_resume_flags(args, recorded: dict) -> None:
    """Refuse a flag given on --resume whose value differs from the one the sweep started with
    (flags left at their defaults keep the original values)."""
    default, given = (json.loads(json.dumps(dataclasses.asdict(a))) for a in (type(args)(), args))  # as recorded
    for field in FIXED_ON_RESUME:
        if field in recorded and given[field] != recorded[field] and given[field] != default[field]:
            was = recorded[field]
            was = (" ".join(map(str, was)) if isinstance(was, list) else was) or "(not given)"
            raise UserError(f"--resume: {flag(field)} cannot change on resume (this sweep started with "
                            f"{flag(field)} {was}); drop it, or start a new sweep with --name")


def check_storage(args, exp_dir: str) -> None:
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
        experiment = check_saved_state(args.name, exp_dir)
        if local:
            recreate_named_checkpoints(exp_dir, experiment)
    elif local and path.exists() and any(path.iterdir()) and not args.overwrite:
        raise UserError(f"a sweep named {args.name!r} already exists under {args.storage}: "
                        "use --resume to finish it, --overwrite to replace it, or --name")


# Tune's saved state: the newest file of each kind is what Tuner.restore reads. If the
# experiment state or the searcher's does not load, or holds no trial yet, Tune logs "Failed to
# restore the run state" and starts a *new* experiment with an empty configuration, so a resume
# would train defaults and write rows without their config; a tuner.pkl that does not load
# makes Tuner.restore raise.
PICKLED_STATES = ("tuner.pkl", "basic-variant-state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


def check_saved_state(name: str, exp_dir: str) -> dict:
    """Refuse, before Ray starts, a resume that Tune would turn into a new, empty sweep; the
    experiment state Tune will restore, decoded."""
    import fnmatch
    import pickle

    import pyarrow.fs
    from ray import cloudpickle
    from ray.tune.utils.serialization import _loads_with_cloudpickle  # how Tune reads it

    fs, path = filesystem(exp_dir)
    files = [info.base_name for info in fs.get_file_info(pyarrow.fs.FileSelector(path))]
    states = sorted(fnmatch.filter(files, EXPERIMENT_STATE))  # Tune takes the last by name
    for pattern in (EXPERIMENT_STATE, *PICKLED_STATES):
        newest = max(fnmatch.filter(files, pattern), default=None)
        if newest is None:
            continue
        try:
            with fs.open_input_stream(f"{path}/{newest}") as stream:
                data = stream.read()
            state = _loads_with_cloudpickle(data) if pattern == EXPERIMENT_STATE else cloudpickle.loads(data)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            older = f", or delete {newest} to resume from the previous driver's {states[-2]}" if (
                pattern == EXPERIMENT_STATE and len(states) > 1) else ""
            raise UserError(f"--resume: sweep {name!r}: Tune's saved state {newest} does not load (cut off "
                            f"when its driver was killed?); start it again with --overwrite{older}") from None
        if pattern == EXPERIMENT_STATE:
            experiment = state
            if not state.get("trial_data"):
                states = []
    if not states:
        raise UserError(f"--resume: sweep {name!r} holds no saved state yet (it was stopped before its "
                        "first save; start it again with --overwrite)")
    return experiment


def recreate_named_checkpoints(exp_dir: str, experiment: dict) -> None:
    """Give each trial the checkpoint folder Tune's saved state names, if it is gone.

    The saved state is a moment older than the trials' folders (it is published only whole,
    marl.storage), and meanwhile `num_to_keep` may have deleted the checkpoint it names; Tune
    would then fail that trial before our code runs ("does not exist on storage anymore",
    ray-project/ray#27790). An empty folder of that name lets the trial start, and
    `marl.trainable.restore_state` resumes it from its newest checkpoint that loads."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    for _, run_metadata in experiment["trial_data"]:
        manager = _TrainingRunMetadata.from_json_state(run_metadata).checkpoint_manager
        latest = manager.latest_checkpoint_result if manager else None
        if latest is None:
            continue
        named = Path(latest.checkpoint.path)
        folder = Path(exp_dir) / named.parent.name / named.name
        if not folder.exists():
            folder.mkdir(parents=True)
            print(f"marl: {named.parent.name}: Tune's saved state names {named.name}, deleted after that "
                  "save; the trial resumes from its newest checkpoint", file=sys.stderr)
