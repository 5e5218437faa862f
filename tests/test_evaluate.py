import numpy as np
import pytest

from marl import names
from marl.evaluate import discretize, entropy, mi_matrix, mig


def _factors(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 4, n), rng.integers(0, 10, n)], axis=1)


def test_identity_representation_has_mi_equal_to_factor_entropy():
    f = _factors()
    mi = mi_matrix(f.astype(float), f)
    h = [entropy(f[:, 0]), entropy(f[:, 1])]
    assert mi[0, 0] == pytest.approx(h[0]) and mi[1, 1] == pytest.approx(h[1])
    assert h[0] == pytest.approx(np.log(4), abs=0.01)
    assert mi[0, 1] < 0.02 and mi[1, 0] < 0.02  # independent factors


def test_constant_representation_has_zero_mi():
    f = _factors()
    assert np.allclose(mi_matrix(np.zeros((len(f), 3)), f), 0.0)


def test_mi_is_invariant_to_monotone_rescaling_of_a_code():
    f = _factors()
    code = f[:, :1] + np.random.default_rng(1).normal(0, 0.1, (len(f), 1))
    assert mi_matrix(code, f) == pytest.approx(mi_matrix(3 * code + 7, f))


def test_discretize_uses_equal_width_bins():
    codes = ((np.arange(100) + 0.5) / 100)[:, None]
    binned = discretize(codes, n_bins=20)
    assert binned.min() == 1 and binned.max() == 20
    assert np.all(np.bincount(binned[:, 0])[1:] == 5)


def test_mig_is_one_for_a_perfectly_axis_aligned_code_and_zero_for_a_duplicated_one():
    f = _factors()
    h = np.array([entropy(f[:, 0]), entropy(f[:, 1])])
    aligned = mi_matrix(f.astype(float), f)
    assert mig(aligned, h) == pytest.approx(1.0, abs=0.02)
    duplicated = mi_matrix(np.stack([f[:, 0], f[:, 0], f[:, 1], f[:, 1]], 1).astype(float), f)
    assert mig(duplicated, h) == pytest.approx(0.0, abs=1e-9)


def test_separation_formula():
    m = {names.probe("shared", "timbre"): 1.0, names.probe("private", "timbre"): 0.25,
         names.probe("private", "pitch"): 0.9, names.probe("shared", "pitch"): 0.1}
    assert names.separation(m) == pytest.approx(((1.0 - 0.25) + (0.9 - 0.1)) / 2)
