"""The Ray Tune function trainable: MARL training with per-epoch reports and checkpoints.

One code path trains one configuration or a packed trial's K members (`marl.sweep --pack`):
both are a `marl.trainer.Trainer` of K ≥ 1 configurations. Every epoch reports the loss terms
(`loss/<term>`); at evaluation points (every `eval_every` epochs, and always at the end) it
also reports the metrics that `metrics.json` holds. A packed trial reports member i's figures
as `m<i>/<metric>`. Checkpoints are written every `checkpoint_every` epochs, at evaluations
and at the end; the final one holds, per member (`m<i>/` when packed), `model.pt` (config,
weights, input normalisation), `metrics.json` and `latents.parquet`. A non-finite loss ends a
member early with `diverged` = 1 and the epoch it happened.

The device and the torch threads follow what Ray gave this run of the trial (CUDA when it
holds a GPU, the CPU otherwise; as many threads as CPUs unless `threads` is set), so a resumed
sweep trains where and how its new flags say; `cpus` and `gpus` record what it was given.
`time/train_seconds`, `time/eval_seconds` and `time/checkpoint_seconds` add up what this run
of the trial spent on each before the report (a checkpoint's own writing counts in the next).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune

from marl import names, trial
from marl.data import load_dataset
from marl.files import DISK_FULL, DiskFull
from marl.fit import Epoch, fit
from marl.member import model_file, write_member
from marl.progress import CHECKPOINT_LOGGER
from marl.provenance import provenance
from marl.results import unprefixed
from marl.storage import is_local
from marl.trainer import Trainer, pick_device

STATE_FILE = "trainer.pt"


def write_checkpoint(folder: Path, state: dict, outputs: dict) -> None:
    """The trainer state, and each finished member's metrics.json, latents.parquet and model.pt
    (outputs: {prefix: (metrics, latents, model file)}), into `folder`. A full disk is one clear
    error; the trial's earlier checkpoints are untouched (Tune keeps only completed ones)."""
    try:
        for prefix, (metrics, latents, model) in outputs.items():
            write_member(folder / prefix, metrics, latents, model)
        torch.save(state, folder / STATE_FILE)
    except (OSError, DiskFull) as err:
        if isinstance(err, DiskFull) or err.errno in DISK_FULL:
            raise OSError(errno.ENOSPC, f"disk full while writing the epoch-{state['trainer']['epoch']} "
                                     f"checkpoint in {folder}; the trial's earlier checkpoints are intact: "
                                     "free space, then --resume") from None
        raise


def trial_device(name: str) -> torch.device:
    """`auto` means the GPU Ray gave this trial, if any; never one it did not give."""
    if name == "auto":
        return torch.device("cuda" if ray.get_gpu_ids() else "cpu")
    return pick_device(name)


def checkpoint_folder(checkpoint):
    """A context giving the checkpoint's folder on this machine: the folder itself on a local
    disk (Tune's `as_directory` would copy it, not knowing marl.storage's filesystem is local),
    a downloaded copy from a bucket."""
    if is_local(checkpoint.filesystem):
        return contextlib.nullcontext(checkpoint.path)
    return checkpoint.as_directory()


def load_checkpoint_state(checkpoint, device) -> dict:
    """The trainer state in a checkpoint, on local or URI storage (raises if it does not load)."""
    with checkpoint_folder(checkpoint) as d:
        return torch.load(Path(d) / STATE_FILE, weights_only=False, map_location=device)


STARTED_FILE = ".marl-started"  # in a trial's folder once it has started training


def trial_storage() -> tuple[object, str]:
    """This trial's folder on the sweep's storage, and its pyarrow filesystem. Tune names it in
    the session's storage context only (no public API does)."""
    from ray.train._internal.session import get_session

    storage = get_session().storage
    return storage.storage_filesystem, storage.trial_fs_path


def restore_state(checkpoint, device, storage: tuple[object, str]) -> tuple[dict | None, str, object]:
    """The trainer state to resume from, how it was found, and the checkpoint it came from.

    How: "named" (the checkpoint Tune named, or none needed: a first start), "newer" (one Tune
    never recorded: Tune logs a report before it registers the report's checkpoint, and a kill
    between the worker's write and either step leaves this; also a checkpoint found when Tune
    names none, a kill before Tune registered the trial's first), "older" (work Tune had recorded
    is trained again) or "none" (nothing loads: the trial starts again from epoch 0; also a
    trial that had started before, by its STARTED_FILE, and left no checkpoint).

    The newest checkpoint that loads wins over the one Tune recorded: after a driver kill,
    Tune's (throttled) experiment state can name an older checkpoint, or one that `num_to_keep`
    has since deleted (ray-project/ray#27790), and resuming from it would train epochs twice. A
    checkpoint being written at the moment of a kill is partial: it is skipped, logged on stderr,
    and costs only its own epoch, as the epoch in flight at any kill does. The trial's folder
    (`storage`: filesystem, path) is listed through pyarrow, so a bucket works like a local folder.
    """
    import pickle

    from pyarrow.fs import FileSelector, FileType

    fs, trial_dir = storage
    try:
        infos = fs.get_file_info(FileSelector(trial_dir, allow_not_found=True))
    except OSError as err:  # the named checkpoint, if any, is still tried below
        print(f"marl: cannot list {trial_dir} ({err}); trying only the checkpoint Tune named", file=sys.stderr)
        infos = []
    folders = sorted((i.path for i in infos if i.type == FileType.Directory
                      and Path(i.path).name.startswith("checkpoint_")), reverse=True)
    if checkpoint is not None and checkpoint.path not in folders:
        folders.append(checkpoint.path)
    named = Path(checkpoint.path).name if checkpoint is not None else ""  # checkpoint_%06d: sort by index
    for folder in folders:
        found = tune.Checkpoint(folder, filesystem=fs)
        try:
            state = load_checkpoint_state(found, device)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError,
                AttributeError, ImportError) as err:
            # missing, cut off mid-write (torch.load's RuntimeError for a partial zip), or garbled
            # (what unpickling garbage raises): the next newest
            print(f"marl: skipping checkpoint {folder}: it does not load ({type(err).__name__})", file=sys.stderr)
            continue
        name = Path(folder).name
        return state, "named" if name == named else "newer" if name > named else "older", found
    started = any(Path(i.path).name == STARTED_FILE for i in infos)
    return None, "none" if checkpoint is not None or started else "named", None


def mark_started(storage: tuple[object, str]) -> None:
    fs, trial_dir = storage
    fs.create_dir(trial_dir, recursive=True)
    with fs.open_output_stream(f"{trial_dir}/{STARTED_FILE}") as stream:
        stream.write(b"")


def marl_trainable(config: dict, checkpoint_every: int = 1, verbose: bool = False) -> None:
    if not verbose:  # Ray logs every checkpoint it persists: one console line each
        logging.getLogger(CHECKPOINT_LOGGER).setLevel(logging.WARNING)
    cfgs = trial.configs(config)
    cfg, k = cfgs[0], len(cfgs)  # members share everything but alpha, beta, gamma and seed
    packed = trial.is_packed(config)
    prefix = [names.member_prefix(i, packed) for i in range(k)]
    node = ray.get_runtime_context().get_node_id()  # which machine ran it, for the record
    granted = ray.get_runtime_context().get_assigned_resources()  # this run's, resumed or not
    torch.set_num_threads(cfg.threads or max(1, int(granted.get("CPU", 1))))
    data = load_dataset(cfg)  # built once per node, shared through the on-disk cache
    if data.skipped:  # into the trial's log: the sweep goes on with the notes that are usable
        print(f"marl: {cfg.source}: {len(data.skipped)} note(s) skipped: " + "; ".join(data.skipped), file=sys.stderr)
    device = trial_device(cfg.device)
    trainer = Trainer(cfgs, data, device)
    diverged: dict[int, int] = {}
    checkpoint, storage = tune.get_checkpoint(), trial_storage()
    state, found, source = restore_state(checkpoint, device, storage)
    restarts = state.get("restarts", 0) if state else 0
    if state:
        trainer.load_state_dict(state["trainer"])
        diverged = state["diverged"]
    if found in ("older", "none"):  # never silent: logged, and counted in the results' `restarts`
        restarts += 1
        where = f"epoch {trainer.epoch}" if state else "epoch 0 (no intact checkpoint)"
        what = f"checkpoint {checkpoint.path} did not load" if checkpoint else "restarted before its first checkpoint"
        print(f"marl: {what}; resuming from {where}", file=sys.stderr)
    if found == "newer" and checkpoint is None:
        print(f"marl: restarted before Tune registered its first checkpoint; resuming from "
              f"{Path(source.path).name}", file=sys.stderr)
    mark_started(storage)
    if state and "report" in state and (trainer.epoch >= cfg.epochs or len(diverged) == k):
        # finished before the driver died, which never logged it: report the final result again
        with checkpoint_folder(source) as d:
            tune.report({**state["report"], "restarts": restarts}, checkpoint=tune.Checkpoint.from_directory(d))
        return
    if found == "newer" and "report" in state:  # its epoch is not trained again, and its report
        # may never have reached Tune: report it again (epochs.parquet keeps one row per epoch)
        tune.report({**state["report"], "restarts": restarts})

    checkpoint_s = names.TRIAL_TIMES[2]

    def on_epoch(result: Epoch) -> None:
        report = {"epoch": result.epoch, "node": node, "device": device.type, "restarts": restarts,
                  "cpus": granted.get("CPU", 0.0), "gpus": granted.get("GPU", 0.0),
                  "threads": torch.get_num_threads(), **provenance()}
        for i, member_losses in enumerate(result.losses):
            report.update({prefix[i] + key: v for key, v in member_losses.items()})
            report[prefix[i] + names.DIVERGED] = int(i in result.diverged)
            if i in result.diverged:
                report[prefix[i] + "diverged_epoch"] = result.diverged[i]
            # Every report carries every evaluation metric (NaN until evaluated): Tune's
            # searchers and schedulers expect their metric in each result.
            report.update({prefix[i] + key: float("nan") for key in names.eval_scalars()})
        for i, (metrics, _) in result.evaluated.items():
            report.update({prefix[i] + key: v for key, v in metrics.items()})
        report.update(result.spent)
        if not (result.evaluating or result.epoch % checkpoint_every == 0):
            tune.report(report)
            return
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            outputs = {prefix[i]: (unprefixed(report, prefix[i]), latents,
                                   model_file(cfgs[i], result.models[i], data))
                       for i, (_, latents) in result.evaluated.items()} if result.final else {}
            write_checkpoint(Path(d), {"trainer": trainer.state_dict(), "diverged": result.diverged,
                                       "restarts": restarts, "report": report}, outputs)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))
        result.spent[checkpoint_s] += time.perf_counter() - start

    fit(trainer, on_epoch, diverged)
