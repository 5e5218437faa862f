import numpy as np
import pytest

from marl import names
from marl.evaluate import (
    discrete_mi,
    discretize,
    entropy,
    labels,
    majority_rate,
    mi_matrix,
    mig,
    shuffled_mi_matrix,
)
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


def test_discrete_mi_is_sklearns_mutual_info_score_column_by_column():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, 3000)
    b = np.stack([a + rng.integers(0, 2, 3000), rng.integers(0, 7, 3000), a * 10 - 3, np.zeros(3000)], 1)
    expected = [mutual_info_score(a, b[:, j]) for j in range(b.shape[1])]
    assert discrete_mi(a, b) == pytest.approx(expected, abs=1e-12)


def test_entropy_is_the_plug_in_entropy_of_the_class_frequencies():
    from scipy.stats import entropy as scipy_entropy

    f = np.random.default_rng(4).integers(0, 6, 2500) ** 2  # labels need not be 0..C-1
    assert entropy(f) == pytest.approx(scipy_entropy(np.unique(f, return_counts=True)[1]), abs=1e-12)


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


def test_chance_corrected_accuracy_is_zero_at_chance_and_one_when_perfect():
    assert names.chance_corrected(0.25, 0.25) == pytest.approx(0.0)
    assert names.chance_corrected(1 / 21, 1 / 21) == pytest.approx(0.0)
    assert names.chance_corrected(1.0, 1 / 21) == pytest.approx(1.0)
    assert names.chance_corrected(0.625, 0.25) == pytest.approx(0.5)


def test_chance_is_what_a_constant_predictor_scores():
    from sklearn.dummy import DummyClassifier

    rng = np.random.default_rng(3)
    uniform = np.repeat(np.arange(21), 10)
    assert majority_rate(uniform, uniform) == pytest.approx(1 / 21)
    # the lower class of a pair of uniform pitches: class 0 is the most frequent (41/441)
    pairs = rng.integers(0, 21, (4000, 2)).min(1)
    held_out = rng.integers(0, 21, (4000, 2)).min(1)
    dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(pairs), 1)), pairs)
    assert majority_rate(pairs, held_out) == pytest.approx(dummy.score(np.zeros((len(held_out), 1)), held_out))
    assert majority_rate(pairs, held_out) > 1.5 / 21


CHANCE = {"timbre": 0.25, "pitch": 1 / 21}


def _accuracies(shared_timbre, private_timbre, private_pitch, shared_pitch, split="test", kind="mlp",
                chance=CHANCE):
    out = {names.probe("shared", "timbre", split, kind): shared_timbre,
           names.probe("private", "timbre", split, kind): private_timbre,
           names.probe("private", "pitch", split, kind): private_pitch,
           names.probe("shared", "pitch", split, kind): shared_pitch}
    return {**out, **{names.chance(latent, task, split): chance[task]
                      for latent in names.SUBSPACES for task in names.TASKS}}


def test_separation_and_leakage_are_chance_corrected():
    # perfect: timbre only in shared, pitch only in private, the wrong subspaces at chance
    perfect = _accuracies(1.0, 0.25, 1.0, 1 / 21)
    assert names.separation_score(perfect) == pytest.approx(1.0)
    assert names.leakage_score(perfect) == pytest.approx(0.0)
    # known answer: cc = (.625-.25)/.75 = .5 for private timbre; (.524-.048)/.952 = .5 for shared pitch
    m = _accuracies(1.0, 0.625, 1.0, 0.5 + 0.5 / 21)
    assert names.separation_score(m) == pytest.approx(0.5)
    assert names.leakage_score(m) == pytest.approx(0.5)
    # raw averages would call a 21-class probe at chance "leaking" .048; corrected it is 0
    at_chance = _accuracies(0.25, 0.25, 1 / 21, 1 / 21, "val", "linear")
    assert names.separation_score(at_chance, "val", "linear") == pytest.approx(0.0)
    # skewed classes: a probe that only predicts the majority class (rate .6) scores 0
    skewed = _accuracies(0.6, 0.6, 0.6, 0.6, chance={"timbre": 0.6, "pitch": 0.6})
    assert names.leakage_score(skewed) == pytest.approx(0.0)
    # timbre not applicable (unseen instruments, NaN probes): the pitch term alone, not NaN
    nan = float("nan")
    no_timbre = _accuracies(nan, nan, 1.0, 0.5 + 0.5 / 21, chance={"timbre": nan, "pitch": 1 / 21})
    assert names.separation_score(no_timbre) == pytest.approx(0.5) and names.leakage_score(no_timbre) == pytest.approx(0.5)


def _pairs_split(n: int, seed: int = 0):
    import torch

    from marl.data import Split

    rng = np.random.default_rng(seed)
    pitch = np.stack([rng.integers(0, 21, n), rng.integers(0, 21, n)], 1)
    timbre = np.repeat(rng.integers(0, 4, n)[:, None], 2, 1)
    return Split(torch.zeros(n, 2, 1, 1), {"timbre": torch.as_tensor(timbre), "pitch_class": torch.as_tensor(pitch)})


def test_the_fused_label_is_order_free_and_a_symmetric_code_of_the_pair_reaches_it():
    import torch

    from marl.data import Split
    from marl.model import product_of_experts

    n = 3000
    split = _pairs_split(n)
    pitch, timbre = split.factors["pitch_class"].numpy(), split.factors["timbre"].numpy()
    swapped = Split(split.x.flip(1), {k: v.flip(1) for k, v in split.factors.items()})
    ys, ys_swapped = labels(split, names.FACTOR_OF_TASK), labels(swapped, names.FACTOR_OF_TASK)
    assert len(ys["fused"]["pitch"]) == n and len(ys["shared"]["pitch"]) == 2 * n
    for task in names.TASKS:  # a pair and its swapped pair carry the same label
        assert np.array_equal(ys["fused"][task], ys_swapped["fused"][task])
    assert np.array_equal(ys["fused"]["timbre"], timbre[:, 0])
    # a genuinely symmetric code: the product of experts of two views that each carry their own
    # pitch; the pair and its swapped pair fuse to the same code
    rng = np.random.default_rng(1)
    views = torch.as_tensor(np.eye(21)[pitch] + rng.normal(0, 0.01, (n, 2, 21)), dtype=torch.float32)
    logvar = torch.zeros(2, n, 21)
    code, _ = product_of_experts(views.transpose(0, 1), logvar)
    code_swapped, _ = product_of_experts(views.flip(1).transpose(0, 1), logvar)
    assert torch.allclose(code, code_swapped)
    code, y, third = code.numpy(), ys["fused"]["pitch"], n // 3
    splits = [(code[i * third:(i + 1) * third], y[i * third:(i + 1) * third]) for i in range(3)]
    _, acc = probe_accuracy("mlp", *splits, n_classes=21)
    assert acc >= 0.95
    # view 0's pitch, the old label, is capped near ½ on the same code
    y0 = pitch[:, 0]
    _, capped = probe_accuracy("mlp", *[(code[i * third:(i + 1) * third], y0[i * third:(i + 1) * third])
                                        for i in range(3)], n_classes=21)
    assert capped < 0.6


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


def test_evaluate_returns_the_disentanglement_scores_of_a_trained_model(tiny_cfg):
    import torch

    from marl.data import load_dataset
    from marl.evaluate import evaluate
    from marl.trainer import Trainer

    data = load_dataset(tiny_cfg)
    trainer = Trainer(tiny_cfg, data, torch.device("cpu"))
    trainer.run_epoch()
    metrics, _ = evaluate(trainer.member(0), data, tiny_cfg, torch.device("cpu"))
    scores = {key: metrics[key] for key in names.disentanglement_scalars()}  # every name is there
    assert all(np.isfinite(v) for v in scores.values()), scores  # synth: timbre and pitch both apply
    for measure in names.SHARE_MEASURES:
        for task in names.TASKS:
            assert sum(metrics[names.share(measure, task, s)] for s in names.SUBSPACES) == pytest.approx(1.0)
    assert 0 <= metrics[names.dci("disentanglement")] <= 1 and 0 <= metrics[names.modularity()] <= 1
