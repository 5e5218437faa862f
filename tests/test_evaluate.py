import numpy as np
import pytest

from marl import names
from marl.evaluate import discretize, entropy, labels, mi_matrix, mig, shuffled_mi_matrix
from marl.probes import accuracy as probe_accuracy


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


CLASSES = {"timbre": 4, "pitch": 21}


def test_chance_corrected_accuracy_is_zero_at_chance_and_one_when_perfect():
    assert names.chance_corrected(0.25, 4) == pytest.approx(0.0)
    assert names.chance_corrected(1 / 21, 21) == pytest.approx(0.0)
    assert names.chance_corrected(1.0, 21) == pytest.approx(1.0)
    assert names.chance_corrected(0.625, 4) == pytest.approx(0.5)


def _accuracies(shared_timbre, private_timbre, private_pitch, shared_pitch, split="test", kind="mlp"):
    return {names.probe("shared", "timbre", split, kind): shared_timbre,
            names.probe("private", "timbre", split, kind): private_timbre,
            names.probe("private", "pitch", split, kind): private_pitch,
            names.probe("shared", "pitch", split, kind): shared_pitch}


def test_separation_and_leakage_are_chance_corrected():
    # perfect: timbre only in shared, pitch only in private, the wrong subspaces at chance
    perfect = _accuracies(1.0, 0.25, 1.0, 1 / 21)
    assert names.separation_score(perfect, CLASSES) == pytest.approx(1.0)
    assert names.leakage_score(perfect, CLASSES) == pytest.approx(0.0)
    # known answer: cc = (.625-.25)/.75 = .5 for private timbre; (.524-.048)/.952 = .5 for shared pitch
    m = _accuracies(1.0, 0.625, 1.0, 0.5 + 0.5 / 21)
    assert names.separation_score(m, CLASSES) == pytest.approx(0.5)
    assert names.leakage_score(m, CLASSES) == pytest.approx(0.5)
    # raw averages would call a 21-class probe at chance "leaking" .048; corrected it is 0
    at_chance = _accuracies(0.25, 0.25, 1 / 21, 1 / 21, "val", "linear")
    assert names.separation_score(at_chance, CLASSES, "val", "linear") == pytest.approx(0.0)


def test_fused_probe_labels_each_pair_once_so_a_perfect_code_scores_one():
    from marl.data import Split

    n = 400
    rng = np.random.default_rng(0)
    pitch = np.stack([rng.integers(0, 21, n), rng.integers(0, 21, n)], 1)
    timbre = np.repeat(rng.integers(0, 4, n)[:, None], 2, 1)
    import torch

    split = Split(torch.zeros(n, 2, 1, 1), {"timbre": torch.as_tensor(timbre),
                                           "pitch_class": torch.as_tensor(pitch)})
    ys = labels(split)
    assert len(ys["fused"]["pitch"]) == n and np.array_equal(ys["fused"]["pitch"], pitch[:, 0])
    assert len(ys["shared"]["pitch"]) == 2 * n
    # a fused code that holds view 0's pitch exactly: accuracy 1, not capped at 0.5
    code = np.eye(21)[pitch[:, 0]] + rng.normal(0, 0.01, (n, 21))
    half = n // 2
    _, acc = probe_accuracy("linear", (code[:half], pitch[:half, 0]), (code[:half], pitch[:half, 0]),
                            (code[half:], pitch[half:, 0]), n_classes=21)
    assert acc > 0.97


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_probes_read_a_linearly_encoded_factor_and_fail_on_noise(kind):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 1200)
    code = np.eye(4)[y] @ rng.normal(size=(4, 6)) + rng.normal(0, 0.05, (1200, 6))
    noise = rng.normal(size=(1200, 6))
    splits = lambda z: ((z[:800], y[:800]), (z[800:1000], y[800:1000]), (z[1000:], y[1000:]))  # noqa: E731
    val, test = probe_accuracy(kind, *splits(code))
    assert val > 0.95 and test > 0.95
    _, chance = probe_accuracy(kind, *splits(noise))
    assert chance < 0.40  # chance is .25


def test_shuffled_factor_baseline_matches_the_estimators_bias_on_an_independent_factor():
    # 2048 clips, 21 classes, 20 bins: the binned estimate reads ~0.09 nats where the truth is 0
    rng = np.random.default_rng(2)
    factor = rng.integers(0, 21, (2048, 1))
    code = rng.normal(size=(2048, 3))
    raw = mi_matrix(code, factor)
    baseline = shuffled_mi_matrix(code, factor, seed=3)
    assert raw.mean() > 0.05  # the bias is real
    assert abs(raw.mean() - baseline.mean()) < 0.02  # and the baseline reads the same
    # a dependent factor stands far above its baseline
    informative = factor + rng.normal(0, 0.3, factor.shape)
    assert mi_matrix(informative, factor).mean() - shuffled_mi_matrix(informative, factor).mean() > 1.0
