"""Known answers of marl.disentanglement: hand-computed formulas on given matrices, and codes
whose disentanglement is known by construction (each factor in its own dimension, then mixed)."""

import math

import numpy as np
import pandas as pd
import pytest

from marl import disentanglement as dl
from marl import names
from marl.evaluate import disentanglement_metrics, mi_matrix

N_TIMBRE, N_PITCH = 4, 21


def _factors(n, rng):
    return np.stack([rng.integers(0, N_TIMBRE, n), rng.integers(0, N_PITCH, n)], axis=1)


def _aligned(f, rng, dims=(3, 0), n_dims=6):
    """Noise dimensions, but timbre written into dims[0] and pitch into dims[1] (a class plus a
    uniform jitter within it: the class is the dimension's integer part)."""
    z = rng.normal(size=(len(f), n_dims))
    for factor, dim in enumerate(dims):
        z[:, dim] = f[:, factor] + rng.uniform(0, 1, len(f))
    return z


def _rotated(z):
    """Dims 0 (pitch) and 3 (timbre), scaled to one range, rotated by 45°: each now holds both."""
    pitch, timbre = z[:, 0] / N_PITCH, z[:, 3] / N_TIMBRE
    out = z.copy()
    out[:, 0], out[:, 3] = (pitch + timbre) / math.sqrt(2), (pitch - timbre) / math.sqrt(2)
    return out


@pytest.fixture(scope="module")
def aligned_and_rotated():
    rng = np.random.default_rng(0)
    f_train, f_test = _factors(2000, rng), _factors(1000, rng)
    z_train, z_test = _aligned(f_train, rng), _aligned(f_test, rng)
    out = {}
    for name, (a, b) in {"aligned": (z_train, z_test), "rotated": (_rotated(z_train), _rotated(z_test))}.items():
        out[name] = dl.scores(a, f_train, b, f_test, mi_matrix(b, f_test), n_private=3)
    return out


# ---------------------------------------------------------------- hand-computed formulas
def test_dci_weights_per_code_and_per_factor_entropies_as_dci_py_does():
    imp = np.array([[0.8, 0.0], [0.2, 0.5], [0.0, 0.5]])  # 3 codes x 2 factors
    # disentanglement: code 0 and code 2 each serve one factor (1 - H = 1); code 1 splits 2:5
    # between the two; codes weigh by their share of all importance, 0.8, 0.7 and 0.5 of 2
    h1 = -(2 / 7 * math.log2(2 / 7) + 5 / 7 * math.log2(5 / 7))
    assert dl.disentanglement(imp) == pytest.approx(0.4 * 1 + 0.35 * (1 - h1) + 0.25 * 1, abs=1e-6)
    # completeness: entropies in base 3 (codes); factor 0 is 0.8/0.2 over two codes, factor 1
    # 0.5/0.5; both factors weigh 1.0 of 2.0
    h0 = -(0.8 * math.log(0.8, 3) + 0.2 * math.log(0.2, 3))
    assert dl.completeness(imp) == pytest.approx(0.5 * (1 - h0) + 0.5 * (1 - math.log(2, 3)), abs=1e-6)
    # a perfect one-to-one code, and one where every code serves every factor alike
    assert dl.disentanglement(np.eye(3)) == pytest.approx(1.0, abs=1e-6)
    assert dl.completeness(np.eye(3)) == pytest.approx(1.0, abs=1e-6)
    assert dl.disentanglement(np.ones((3, 2))) == pytest.approx(0.0, abs=1e-6)
    assert dl.completeness(np.ones((3, 2))) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(dl.disentanglement(imp[:, :1]))  # one factor: nothing to disentangle it from


def test_modularity_of_a_given_mi_matrix():
    mi = np.array([[1.0, 0.0],   # one factor only: 1
                   [0.5, 0.5],   # both alike: 1 - (0.5 - 0.25) / 0.25 = 0
                   [0.0, 0.0],   # no information: 0 by the reference's rule
                   [2.0, 1.0]])  # 1 - (5 - 4) / (4 * 1) = 0.75
    assert dl.modularity(mi) == pytest.approx((1 + 0 + 0 + 0.75) / 4)
    # three factors: the deviation is divided by (F - 1) = 2
    assert dl.modularity(np.array([[1.0, 1.0, 0.0]])) == pytest.approx(1 - 1 / 2)
    assert math.isnan(dl.modularity(mi[:, :1]))


def test_sap_is_the_mean_gap_between_each_factors_top_two_codes():
    score = np.array([[0.9, 0.3], [0.5, 0.8], [0.1, 0.2]])
    assert dl.sap(score) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.3)) / 2)


def test_shares_split_each_factors_weight_between_the_subspaces():
    weights = np.array([[3.0, 0.0], [1.0, 1.0], [0.0, 3.0], [0.0, 0.0]])  # 4 dims x 2 factors
    shares = dl.subspace_shares(weights, n_private=2)
    assert shares == pytest.approx(np.array([[1.0, 0.0], [0.25, 0.75]]))
    assert np.isnan(dl.subspace_shares(np.zeros((4, 1)), 2)).all()  # a factor nothing carries


# ---------------------------------------------------------------- codes of known structure
def test_an_axis_aligned_code_is_disentangled_complete_and_modular(aligned_and_rotated):
    s = aligned_and_rotated["aligned"]
    assert s["disentanglement"] > 0.9 and s["completeness"] > 0.9
    assert s["modularity"] > 0.95
    assert s["sap"] > 0.2  # each factor has one dimension that reads it and others that do not
    assert s["informativeness_test"] > 0.9  # each class is the integer part of its dimension
    assert s["explicitness_test"] > 0.9 and s["explicitness_train"] > 0.9


def test_rotating_the_factor_dimensions_lowers_d_c_modularity_and_sap_but_not_explicitness(aligned_and_rotated):
    aligned, rotated = aligned_and_rotated["aligned"], aligned_and_rotated["rotated"]
    # each rotated dimension holds both factors half and half
    assert rotated["disentanglement"] < aligned["disentanglement"] - 0.5
    assert rotated["completeness"] < aligned["completeness"] - 0.3
    assert rotated["modularity"] < aligned["modularity"] - 0.1
    assert rotated["sap"] < aligned["sap"] - 0.2
    # a rotation is invertible and linear: a linear readout of all codes is as good as before
    assert rotated["explicitness_test"] == pytest.approx(aligned["explicitness_test"], abs=0.02)


def test_explicitness_is_one_for_separable_binary_factors_and_one_half_for_noise():
    rng = np.random.default_rng(1)
    f = rng.integers(0, 2, (1500, 2))
    z = np.concatenate([f + rng.normal(0, 0.1, f.shape), rng.normal(size=(1500, 2))], axis=1)
    train, test = slice(0, 1000), slice(1000, None)
    assert dl.explicitness(z[train], f[train], z[test], f[test])[1] > 0.99
    noise = rng.normal(size=(1500, 4))
    assert dl.explicitness(noise[train], f[train], noise[test], f[test])[1] == pytest.approx(0.5, abs=0.05)


def test_a_code_with_pitch_in_private_and_timbre_in_shared_has_those_shares(aligned_and_rotated):
    rng = np.random.default_rng(2)
    f_train, f_test = _factors(2000, rng), _factors(2000, rng)
    # private dims 0, 1 (pitch in 0); shared dims 2, 3 (timbre in 2)
    z_train, z_test = (_aligned(f, rng, dims=(2, 0), n_dims=4) for f in (f_train, f_test))
    s = dl.scores(z_train, f_train, z_test, f_test, mi_matrix(z_test, f_test), n_private=2)
    for measure in names.SHARE_MEASURES:
        (timbre_private, timbre_shared), (pitch_private, pitch_shared) = s["shares"][measure]
        assert pitch_private > 0.9 and timbre_shared > 0.9, measure
        assert timbre_private + timbre_shared == pytest.approx(1.0)
        assert pitch_private + pitch_shared == pytest.approx(1.0)
    # the rotated code of the fixture spreads each factor over dims 0 (private) and 3 (shared)
    for measure in names.SHARE_MEASURES:
        assert aligned_and_rotated["rotated"]["shares"][measure] == pytest.approx(0.5, abs=0.1)


def test_the_fast_booster_finds_the_dimensions_the_reference_finds():
    rng = np.random.default_rng(3)
    f = np.stack([rng.integers(0, 3, 800), rng.integers(0, 5, 800)], axis=1)
    z = _aligned(f, rng, dims=(1, 3), n_dims=4)
    for booster in dl.BOOSTERS:
        imp = dl.dci(z[:600], f[:600], z[600:], f[600:], booster=booster)["importance"]
        assert imp.sum(axis=0) == pytest.approx([1.0, 1.0])
        assert imp[1, 0] > 0.8 and imp[3, 1] > 0.8, booster  # split gains read from sklearn's trees


# ---------------------------------------------------------------- evaluation and tables
def _member(rng, n_private=2):
    f = {s: _factors(n, rng) for s, n in (("train", 1200), ("test", 800))}
    codes = {s: {"both": _aligned(f[s], rng, dims=(2, 0), n_dims=4)} for s in f}
    for s in codes:
        codes[s]["private"] = codes[s]["both"][:, :n_private]
    ys = {s: {"both": dict(zip(names.TASKS, f[s].T))} for s in f}
    return codes, ys


def test_evaluation_names_every_score_and_leaves_what_needs_a_missing_factor_nan():
    codes, ys = _member(np.random.default_rng(4))
    both = disentanglement_metrics(codes, ys, list(names.TASKS))
    assert set(both) == set(names.disentanglement_scalars()) <= set(names.eval_scalars())
    assert all(math.isfinite(v) for v in both.values())
    assert both[names.share("mi", "pitch", "private")] > 0.8
    assert both[names.share("importance", "timbre", "shared")] > 0.8
    pitch_only = disentanglement_metrics(codes, ys, ["pitch"])  # timbre not applicable (unseen instruments)
    for key in [names.dci("disentanglement"), names.modularity()] + [
            names.share(m, "timbre", s) for m in names.SHARE_MEASURES for s in names.SUBSPACES]:
        assert math.isnan(pitch_only[key]), key
    for key in [names.dci("completeness"), names.sap(), names.explicitness("test"),
                names.share("mi", "pitch", "private")]:
        assert math.isfinite(pitch_only[key]), key
    assert all(math.isnan(v) for v in disentanglement_metrics(codes, ys, []).values())


def test_disentanglement_table_is_mean_and_std_over_seeds_per_setting():
    from analysis.tables import disentanglement_table

    rows = []
    for gamma, base in ((0.0, 0.2), (0.5, 0.6)):
        for seed in range(3):
            rows.append({"status": "ok", "config/gamma": gamma, "config/seed": seed,
                         **{key: base + 0.1 * seed for key in names.disentanglement_scalars()}})
    rows.append({"status": "error", "config/gamma": 0.5, "config/seed": 9})
    table = disentanglement_table(pd.DataFrame(rows))
    assert list(table["gamma"]) == [0.0, 0.5] and list(table["n_seeds"]) == [3, 3]
    key = names.dci("disentanglement")
    assert table[f"{key} mean"].tolist() == pytest.approx([0.3, 0.7])
    assert table[f"{key} std"].tolist() == pytest.approx([0.1, 0.1])
    assert table.attrs["n_excluded"] == 1
