"""Named search spaces: one small file each, or a path to the user's own file.

A space file is a Python module with:

    DESCRIPTION  one line
    SPACE        a Ray Tune param_space over marl.config.Config fields (tune.grid_search,
                 tune.uniform, ...). A value that is a dict of fields (e.g. one grid point of
                 the ablation) is merged into the trial's config; a field named `<w>_log10`
                 sets `<w>` = 10**value, or 0 where value <= marl.trial.ZERO_BELOW_LOG10.
    BASE         (optional) fixed config fields for every trial, e.g. fewer epochs
    SEARCH       (optional) "grid" (default) or "optuna"
    NUM_SAMPLES  (optional) repeats of the grid, or Optuna trials (default 1)
    METRICS, MODES  (optuna) objectives and their "max"/"min" directions
    NUM_TRIALS   the documented number of trials (checked by the tests)

A space can also be a YAML (.yaml, .yml) or JSON (.json) file with the same keys in lower case
(description, space, base, search, num_samples, metrics, modes, num_trials). In `space`, a
plain value is fixed and a one-key mapping is an axis:

    space:
      seed: {grid: [0, 1, 2]}              # tune.grid_search; values may be dicts of fields
      gamma_log10: {uniform: [-3.5, 0.3]}  # tune.uniform(low, high)
      lr: {loguniform: [1.0e-4, 1.0e-2]}   # tune.loguniform(low, high)
      latent_dim: {choice: [4, 8, 16]}     # tune.choice(values)
      hidden: {randint: [64, 257]}         # tune.randint(low, high), high exclusive
      epochs: 30                           # fixed

It is validated when loaded (before Ray starts); any problem is a one-line error.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from marl.errors import UserError

NAMES = ("paper_ablation", "ablation_subset", "latent_size", "full_grid", "optuna", "smoke", "convergence",
         "separation", "separation_optuna", "gamma_study", "gamma_study_cpu", "recipe")


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


DATA_SUFFIXES = (".yaml", ".yml", ".json")
DISTRIBUTIONS = {"grid": 1, "choice": 1, "uniform": 2, "loguniform": 2, "randint": 2}  # -> arguments
DATA_KEYS = ("description", "space", "base", "search", "num_samples", "metrics", "modes", "num_trials")


def load(name_or_path: str) -> SearchSpace:
    """A space by name (this package) or by path to a .py, .yaml, .yml or .json file."""
    path = Path(name_or_path)
    if path.suffix in DATA_SUFFIXES:
        return load_data_file(path)
    if name_or_path.endswith(".py") or path.exists():
        if not path.is_file():
            raise UserError(f"space: no such file {path}")
        if path.suffix != ".py":
            raise UserError(f"space: {path} is neither Python (.py) nor YAML/JSON "
                            f"({', '.join(DATA_SUFFIXES)})")
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
    return checked(SearchSpace(
        name=name, description=getattr(module, "DESCRIPTION", ""), space=module.SPACE,
        base=dict(getattr(module, "BASE", {})), search=getattr(module, "SEARCH", "grid"),
        num_samples=int(getattr(module, "NUM_SAMPLES", 1)),
        metrics=list(getattr(module, "METRICS", [])), modes=list(getattr(module, "MODES", [])),
        num_trials=getattr(module, "NUM_TRIALS", None)))


def load_data_file(path: Path) -> SearchSpace:
    """A space from YAML or JSON (schema in this module's docstring)."""
    import json

    import yaml

    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"space: cannot read {path}: {err.strerror or err}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:  # JSONDecodeError is a ValueError
        raise UserError(f"space: cannot parse {path}: {' '.join(str(err).split())[:200]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("space"), dict):
        raise UserError(f"space: {path} must be a mapping with a 'space' mapping of fields")
    unknown = set(data) - set(DATA_KEYS)
    if unknown:
        raise UserError(f"space: {path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                        f"expected {', '.join(DATA_KEYS)}")
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise UserError(f"space: {path}: 'base' must be a mapping of config fields")
    try:
        num_samples = int(data.get("num_samples", 1))
    except (TypeError, ValueError):
        raise UserError(f"space: {path}: 'num_samples' must be an integer") from None
    metrics, modes = data.get("metrics") or [], data.get("modes") or []
    if not (isinstance(metrics, list) and isinstance(modes, list)):
        raise UserError(f"space: {path}: 'metrics' and 'modes' must be lists")
    return checked(SearchSpace(
        name=path.stem, description=str(data.get("description", "")),
        space={key: axis(key, value, path) for key, value in data["space"].items()}, base=base,
        search=data.get("search", "grid"), num_samples=num_samples, metrics=metrics, modes=modes,
        num_trials=data.get("num_trials")))


def axis(key: str, value, path: Path):
    """A YAML/JSON space entry: a fixed value, or a one-key mapping naming a distribution."""
    from ray import tune

    if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS):
        return value  # fixed (no Config field is named like a distribution)
    kind, args = next(iter(value.items()))
    if not isinstance(args, list) or not args or (DISTRIBUTIONS[kind] == 2 and len(args) != 2):
        shape = "a list of values" if DISTRIBUTIONS[kind] == 1 else "[low, high]"
        raise UserError(f"space: {path}: {key}: {kind} takes {shape}, got {args!r}")
    try:
        if kind == "grid":
            return tune.grid_search(args)
        if kind == "choice":
            return tune.choice(args)
        low, high = (float(a) for a in args) if kind != "randint" else (int(a) for a in args)
        if not low < high or (kind == "loguniform" and low <= 0):
            raise ValueError(f"needs {'0 < ' if kind == 'loguniform' else ''}low < high")
        return getattr(tune, kind)(low, high)
    except (TypeError, ValueError) as err:
        raise UserError(f"space: {path}: {key}: {kind}{args}: {err}") from None


def checked(space: SearchSpace) -> SearchSpace:
    if space.search not in ("grid", "optuna"):
        raise UserError(f"space: SEARCH must be 'grid' or 'optuna', got {space.search!r}")
    if space.search == "optuna" and (not space.metrics or len(space.metrics) != len(space.modes)):
        raise UserError("space: an optuna space needs METRICS and MODES of equal length")
    if space.num_samples < 1:
        raise UserError(f"space: NUM_SAMPLES must be >= 1, got {space.num_samples}")
    return space


def ablation_points(terms=("alpha", "beta", "gamma"), weights=(0.1, 0.5, 1.0)) -> list[dict]:
    """Reconstruction only, then each term alone at each weight (the paper's ablation)."""
    points = [{"ablation": "recon", "alpha": 0.0, "beta": 0.0, "gamma": 0.0}]
    for term in terms:
        for w in weights:
            point = {"ablation": term, "alpha": 0.0, "beta": 0.0, "gamma": 0.0}
            point[term] = w
            points.append(point)
    return points
