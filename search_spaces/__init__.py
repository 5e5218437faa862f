"""Named search spaces: one small file each, or a path to the user's own file.

A space file is a Python module with:

    DESCRIPTION  one line
    SPACE        a Ray Tune param_space over marl.config.Config fields (tune.grid_search,
                 tune.uniform, ...). A value that is a dict of fields (e.g. one grid point of
                 the ablation) is merged into the trial's config; a field named `<w>_log10`
                 sets `<w>` = 10**value, or 0 where value <= ZERO_BELOW_LOG10.
    BASE         (optional) fixed config fields for every trial, e.g. fewer epochs
    SEARCH       (optional) "grid" (default) or "optuna"
    NUM_SAMPLES  (optional) repeats of the grid, or Optuna trials (default 1)
    METRICS, MODES  (optuna) objectives and their "max"/"min" directions
    NUM_TRIALS   the documented number of trials (checked by the tests)
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from marl.errors import UserError

NAMES = ("paper_ablation", "ablation_subset", "latent_size", "full_grid", "optuna", "smoke", "convergence")
LABEL_KEYS = ("ablation",)  # trial labels that are not Config fields (kept as config/<key>)
ZERO_BELOW_LOG10 = -3.0


@dataclass
class SearchSpace:
    name: str
    description: str
    space: dict
    base: dict = field(default_factory=dict)
    search: str = "grid"
    num_samples: int = 1
    metrics: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    num_trials: int | None = None


def load(name_or_path: str) -> SearchSpace:
    """A space by name (this package) or by path to a .py file."""
    path = Path(name_or_path)
    if name_or_path.endswith(".py") or path.exists():
        if not path.is_file():
            raise UserError(f"space: no such file {path}")
        spec = importlib.util.spec_from_file_location(f"user_space_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - the user's file failed to import
            raise UserError(f"space: cannot load {path}: {type(err).__name__}: {err}") from None
        name = path.stem
    elif name_or_path in NAMES:
        module = importlib.import_module(f"search_spaces.{name_or_path}")
        name = name_or_path
    else:
        raise UserError(f"space: unknown space {name_or_path!r}; choose one of "
                        f"{', '.join(NAMES)} or give a path to a .py file")
    if not isinstance(getattr(module, "SPACE", None), dict):
        raise UserError(f"space: {name_or_path} defines no SPACE dict")
    space = SearchSpace(
        name=name, description=getattr(module, "DESCRIPTION", ""), space=module.SPACE,
        base=dict(getattr(module, "BASE", {})), search=getattr(module, "SEARCH", "grid"),
        num_samples=int(getattr(module, "NUM_SAMPLES", 1)),
        metrics=list(getattr(module, "METRICS", [])), modes=list(getattr(module, "MODES", [])),
        num_trials=getattr(module, "NUM_TRIALS", None))
    if space.search not in ("grid", "optuna"):
        raise UserError(f"space: SEARCH must be 'grid' or 'optuna', got {space.search!r}")
    if space.search == "optuna" and (not space.metrics or len(space.metrics) != len(space.modes)):
        raise UserError("space: an optuna space needs METRICS and MODES of equal length")
    return space


def resolve_trial_config(config: dict) -> dict:
    """Flatten a trial's config into Config fields.

    Precedence, whatever the dict order Tune hands over: plain fields < `<w>_log10` fields <
    nested dicts (grid points such as the ablation's) < the "set" dict of --set overrides.
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
        flat.update(resolve_trial_config(value))
    return flat


MEMBERS = "members"  # a packed trial's configurations (marl.sweep --pack)


def trial_members(config: dict) -> list[dict]:
    """The flat configurations a trial trains: one, or each member of a packed trial.

    A packed trial's config holds the fields its members share and, under "members", each
    member's own fields (alpha, beta, gamma, seed, labels).
    """
    flat = resolve_trial_config(config)
    members = flat.pop(MEMBERS, None)
    return [flat] if members is None else [{**flat, **member} for member in members]


def is_packed(config: dict) -> bool:
    return MEMBERS in resolve_trial_config(config)


def ablation_points(terms=("alpha", "beta", "gamma"), weights=(0.1, 0.5, 1.0)) -> list[dict]:
    """Reconstruction only, then each term alone at each weight (the paper's ablation)."""
    points = [{"ablation": "recon", "alpha": 0.0, "beta": 0.0, "gamma": 0.0}]
    for term in terms:
        for w in weights:
            point = {"ablation": term, "alpha": 0.0, "beta": 0.0, "gamma": 0.0}
            point[term] = w
            points.append(point)
    return points
