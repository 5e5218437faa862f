"""A trial's Tune config, and the configurations it trains (the packed-trial protocol).

A trial trains one configuration, or the K members of a packed trial (`marl.sweep --pack`).
Its config holds Config fields and labels (LABEL_KEYS); a packed trial's holds the fields its
members share and, under MEMBERS, each member's own fields (alpha, beta, gamma, seed, labels).
A grid sweep resolves every trial before Ray starts (marl.plan), so its configs hold plain
values; an Optuna trial's config is sampled inside Tune and may hold `<w>_log10` fields and the
"set" dict of --set overrides, which `flatten` resolves.
"""

from __future__ import annotations

import dataclasses

from marl.config import Config
from marl.names import WEIGHTS

LABEL_KEYS = ("ablation", "recipe")  # trial labels that are not Config fields (kept as config/<key>)
MEMBERS = "members"  # a packed trial's configurations
ZERO_BELOW_LOG10 = -3.0  # a weight sampled as `<w>_log10` at or below this is 0
MEMBER_FIELDS = (*WEIGHTS, "seed")  # what may differ between a packed trial's members; all else matches


def flatten(config: dict) -> dict:
    """A trial's config as flat fields.

    Precedence, whatever the dict order Tune hands over: plain fields < `<w>_log10` fields <
    nested dicts (grid points such as the ablation's) < the "set" dict of --set overrides.
    A packed trial's MEMBERS list is a plain value here.
    """
    flat, logs, nested = {}, {}, []
    for key, value in config.items():
        if isinstance(value, dict):
            nested.append((key == "set", value))
        elif key.endswith("_log10"):
            logs[key[: -len("_log10")]] = 0.0 if value <= ZERO_BELOW_LOG10 else 10.0 ** value
        else:
            flat[key] = value
    flat.update(logs)
    for _, value in sorted(nested, key=lambda item: item[0]):  # "set" last
        flat.update(flatten(value))
    return flat


def members(config: dict) -> list[dict]:
    """The flat configurations (fields and labels) a trial trains: one, or each member's."""
    flat = flatten(config)
    own = flat.pop(MEMBERS, None)
    return [flat] if own is None else [{**flat, **member} for member in own]


def is_packed(config: dict) -> bool:
    return MEMBERS in flatten(config)


def configs(config: dict) -> list[Config]:
    """The Configs a trial trains, validated (labels dropped). A sweep resolves every field
    before Ray starts, so a config without them is never trained on defaults: it means Tune
    lost the sweep's configuration (a new experiment started in place of a resume)."""
    flat, known = members(config), {f.name for f in dataclasses.fields(Config)}
    if not all(known & set(m) for m in flat):
        raise ValueError(f"this trial's config names no training fields ({sorted(config)}): "
                         "Tune lost the sweep's configuration; nothing was trained")
    return [Config.from_labelled(m) for m in flat]
