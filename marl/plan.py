"""The plan of a sweep, before Ray starts: every configuration resolved and validated, grouped
into packed trials, and the resources each trial gets. Pure functions of a search space (marl.sweep
loads it) and the sweep's flags: tests call them without Ray.

A trial's Tune config is planned here once (marl.trial reads it); nothing downstream resolves a
grid trial again.
"""

from __future__ import annotations

import math
from dataclasses import fields

from marl import trial
from marl.cli import parse_key_values
from marl.config import Config
from marl.errors import UserError

PACK_CAP = 64  # members per packed trial on a GPU: 31x the throughput of one at K=64, 35x at 256
PACK_MEMORY_BYTES = 16 * 2**30  # what auto packing lets one trial's members take on its GPU


def parse_sets(sets) -> dict:
    known = {f.name for f in fields(Config)}
    out = {key.replace("-", "_"): value for key, value in parse_key_values(sets, "--set").items()}
    for key in out:
        if key not in known:
            raise UserError(f"--set: unknown config field {key!r}")
    return out


def fixed_fields(space, args) -> tuple[dict, dict]:
    """Every Config field fixed (defaults < space BASE < --config file < --set), validated, and
    the --set values alone (they win over the space's axes too)."""
    sets = parse_sets(args.sets)
    from_file = Config.from_file(args.config) if args.config else {}
    # threads stay 0 (= the CPUs Ray grants the trial, read inside it): a resumed sweep with
    # another --cpus-per-trial then runs with the new count
    fixed = Config.from_dict({**space.base, **from_file, **sets}).with_absolute_paths().to_dict()
    return fixed, {k: fixed[k] for k in sets}


def grid_configs(space, args) -> list[tuple[Config, dict]]:
    """Each grid point's Config, validated once here, before Ray, and its labels."""
    fixed, sets = fixed_fields(space, args)
    planned = []
    for variant in expand_grid({**fixed, **space.space}):
        flat = {**trial.flatten(variant), **sets}
        labels = {k: v for k, v in flat.items() if k in trial.LABEL_KEYS}
        planned.append((checked_config(flat), labels))
    return planned * (args.num_samples or space.num_samples)


def grid_trials(space, args) -> list[dict]:
    """Each grid point as the flat dict (Config fields, values coerced to their types, and labels)
    that its trial's Tune config holds."""
    return [{**cfg.to_dict(), **labels} for cfg, labels in grid_configs(space, args)]


def optuna_param_space(space, args) -> dict:
    """Fixed fields and the space's distributions; --set values under "set" win over both."""
    fixed, sets = fixed_fields(space, args)
    param_space = {**fixed, **space.space}
    if sets:
        param_space["set"] = sets
    return param_space


def pack_trials(trials: list[dict], k: int) -> list[dict]:
    """Group trials that differ only in trial.MEMBER_FIELDS (and labels) into packs of <= k, each
    one trial: the fields its members share, and each member's own under "members"."""
    if k == 1:
        return trials
    own = (*trial.MEMBER_FIELDS, *trial.LABEL_KEYS)
    groups: dict[tuple, list[list[dict]]] = {}
    for planned in trials:
        chunks = groups.setdefault(tuple(sorted((k_, v) for k_, v in planned.items() if k_ not in own)), [[]])
        if len(chunks[-1]) == k:
            chunks.append([])
        chunks[-1].append(planned)
    return [{**{k_: v for k_, v in chunk[0].items() if k_ not in own},
             trial.MEMBERS: [{k_: v for k_, v in t.items() if k_ in own} for t in chunk]}
            for chunks in groups.values() for chunk in chunks]


def grid_param_space(trials: list[dict]) -> dict:
    """The fields every trial shares, and one grid axis "trial" over what differs: Ray's table
    and each trial's config then show exactly what it trains with, nothing overridden."""
    if len(trials) == 1:
        return trials[0]
    from ray import tune

    common = {k: v for k, v in trials[0].items() if all(k in t and t[k] == v for t in trials)}
    return {**common, "trial": tune.grid_search([{k: v for k, v in t.items() if k not in common} for t in trials])}


def expand_grid(param_space: dict) -> list[dict]:
    from ray.tune.search.variant_generator import generate_variants

    return [spec["config"] for _, spec in generate_variants({"config": param_space})]


def checked_config(variant: dict) -> Config:
    known = {f.name for f in fields(Config)} | set(trial.LABEL_KEYS)
    unknown = set(variant) - known
    if unknown:
        raise UserError(f"space: unknown config field(s) {', '.join(sorted(unknown))}")
    try:
        return Config.from_labelled(variant)
    except UserError as err:
        raise UserError(f"space: {err}") from None


def count_trials(space, num_samples: int = 0) -> int:
    n = num_samples or space.num_samples
    if space.search == "optuna":
        return n
    return len(expand_grid(space.space)) * n


def auto_pack(cfg: Config) -> int:
    """Members per packed trial on a GPU: PACK_CAP, fewer when their estimated memory (the
    estimators' B × B × D log-density tensors, forward and backward, dominate) passes
    PACK_MEMORY_BYTES."""
    per_member = 4 * 3 * 6 * cfg.batch_size**2 * cfg.latent_dim + 16 * 4 * cfg.hidden * (
        cfg.n_mels * cfg.n_frames + cfg.hidden + 2 * cfg.latent_dim)
    return max(1, min(PACK_CAP, PACK_MEMORY_BYTES // per_member))


def trials_at_once(cluster_cpus: float, cpus_per_trial: float) -> int:
    """How many trials the cluster's CPUs hold at once (at least one)."""
    return max(1, int(cluster_cpus // cpus_per_trial))


def gpu_share(cluster_gpus: float, cluster_cpus: float, n_trials: int, cpus_per_trial: float) -> float:
    """A trial's GPU share: the cluster's GPUs split over the trials that can run at once,
    rounded down to 1/m so that m trials fit each GPU exactly; at most one GPU."""
    concurrent = max(1, min(n_trials, trials_at_once(cluster_cpus, cpus_per_trial)))
    share = cluster_gpus / concurrent
    return 1.0 if share >= 1 else 1.0 / math.ceil(1.0 / share)
