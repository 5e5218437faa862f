"""The batched torch probes against sklearn's, and their batching (padding, class masks)."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from marl import probes


def sklearn_accuracy(kind, train, val, test, seed=0):
    """The reference: sklearn's probes with the same selection on validation clips."""
    scaler = StandardScaler().fit(train[0])
    (zt, yt), (zv, yv), (zs, ys) = ((scaler.transform(z), y) for z, y in (train, val, test))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if kind == "linear":
            fits = [LogisticRegression(C=c, max_iter=300).fit(zt, yt) for c in probes.LINEAR_C]
            best = max(fits, key=lambda clf: clf.score(zv, yv))  # first of ties, as the probes
            return best.score(zv, yv), best.score(zs, ys)
        clf = MLPClassifier(hidden_layer_sizes=(64,), random_state=seed)
        classes, best, best_val = np.unique(yt), None, -1.0
        for _ in range(clf.max_iter):  # sklearn's default schedule, 200 epochs
            clf.partial_fit(zt, yt, classes=classes)
            if (score := clf.score(zv, yv)) > best_val:
                best, best_val = (clf.coefs_[0].copy(), clf.coefs_[1].copy(),
                                  clf.intercepts_[0].copy(), clf.intercepts_[1].copy()), score
        clf.coefs_[0], clf.coefs_[1], clf.intercepts_[0], clf.intercepts_[1] = best
        return best_val, clf.score(zs, ys)


def fixture(n_classes, dim, noise, seed, n=(4096, 2048, 2048)):  # a default trial's split sizes
    """Codes of a factor: class centres on a curved manifold plus noise, with nuisance dims."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, sum(n))
    t = y / n_classes * 3.0
    signal = np.stack([np.cos(t), np.sin(t), t - 1.5], axis=1)
    z = np.concatenate([signal, np.zeros((len(y), dim - 3))], axis=1) @ rng.normal(size=(dim, dim))
    z += rng.normal(0, noise, z.shape)
    cuts = np.cumsum(n)[:-1]
    return tuple(zip(np.split(z, cuts), np.split(y, cuts)))


CASES = [(4, 8, 1.5, 0), (21, 8, 0.3, 1), (21, 16, 0.8, 2)]


@pytest.mark.parametrize("kind", probes.KINDS)
def test_torch_probes_agree_with_sklearn_within_three_points(kind):
    problems = [dict(zip(("train", "val", "test"), fixture(*case)), n_classes=case[0]) for case in CASES]
    ours = probes.fit_many(kind, problems)
    for case, problem, (val, test, pred) in zip(CASES, problems, ours):
        assert (pred == problem["test"][1]).mean() == pytest.approx(test)  # the predictions scored
        ref_val, ref_test = sklearn_accuracy(kind, problem["train"], problem["val"], problem["test"])
        assert 0.2 < ref_test < 0.99, case  # neither trivial nor hopeless (chance: .25, .048)
        assert test == pytest.approx(ref_test, abs=0.03), (case, test, ref_test)
        assert val == pytest.approx(ref_val, abs=0.03), (case, val, ref_val)


@pytest.mark.parametrize("kind", probes.KINDS)
def test_a_problem_stacked_with_wider_and_larger_ones_scores_as_it_does_alone(kind):
    # padding a 4-class, 8-dim problem to 21 classes and 16 dims must not change what it learns
    small = dict(zip(("train", "val", "test"), fixture(4, 8, 1.5, 0)), n_classes=4)
    wide = dict(zip(("train", "val", "test"), fixture(21, 16, 0.8, 2)), n_classes=21)
    splits = [(probes.stack([p[s][0] for p in (small, wide)]),
               probes.stack([p[s][1] for p in (small, wide)], dtype=torch.long)) for s in probes.SPLITS]
    stacked = probes.fit(kind, *splits, torch.tensor([4, 21]))
    alone = probes.fit_many(kind, [small])[0]
    assert stacked[1][0].item() == pytest.approx(alone[1], abs=0.02)


def test_padded_classes_are_never_predicted_and_take_no_gradient():
    gen = torch.Generator().manual_seed(0)
    offset = probes._absent_offset(torch.tensor([4, 21]), 21)  # a 4-class problem padded to 21
    w = torch.randn(2, 8, 21, generator=gen).requires_grad_()
    b = (10 * torch.randn(2, 21, generator=gen)).requires_grad_()
    logits = probes._linear_logits(w, b, torch.randn(2, 200, 8, generator=gen), offset)
    assert logits[0].argmax(-1).max() < 4
    assert logits[1].argmax(-1).max() >= 4  # the 21-class problem keeps all of its classes
    probes._cross_entropy(logits, torch.randint(0, 4, (2, 200), generator=gen)).sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(b.grad).all()
    assert (w.grad[0, :, 4:] == 0).all() and (b.grad[0, 4:] == 0).all()
    assert probes._class_mask(torch.tensor([21, 21]), 21) is None  # nothing to mask: no cost


def test_standardise_uses_training_statistics_and_leaves_constant_columns_finite():
    train = torch.tensor([[[1.0, 5.0], [3.0, 5.0]]])
    test = torch.tensor([[[2.0, 7.0]]])
    t, s = probes.standardise(train, test)
    assert torch.allclose(t, torch.tensor([[[-1.0, 0.0], [1.0, 0.0]]]))
    assert torch.allclose(s, torch.tensor([[[0.0, 2.0]]]))


def test_the_linear_probes_written_out_gradient_is_autograds_of_sklearns_objective():
    """½‖W‖² + C·Σ cross-entropy over C·n, per problem, summed; classes past a problem's own
    count are masked (-inf), and the cross-entropy gives them no gradient."""
    gen = torch.Generator().manual_seed(0)
    p, n, d, c = 3, 50, 5, 0.7
    n_classes = torch.tensor([4, 2, 3])
    x = torch.randn(p, n, d, generator=gen, dtype=torch.float64)
    y = torch.stack([torch.randint(int(k), (n,), generator=gen) for k in n_classes])
    w = torch.randn(p, d, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(p, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    offset = probes._absent_offset(n_classes, 4).double()
    loss, grad_w, grad_b = probes.linear_loss_and_grad(w.detach(), b.detach(), x, y, offset, c)

    logits = (x @ w + b[:, None] + offset[:, None]).flatten(0, 1)
    ce = torch.nn.functional.cross_entropy(logits, y.flatten(), reduction="none").view(p, n)
    reference = (0.5 * w.pow(2).sum((1, 2)) + c * ce.sum(1)).sum() / (c * n)
    reference.backward()
    torch.testing.assert_close(loss, reference.detach())
    torch.testing.assert_close(grad_w, w.grad)
    torch.testing.assert_close(grad_b, b.grad)
    assert grad_b[1, 2:].eq(0).all()  # and W's masked columns only feel the penalty:
    torch.testing.assert_close(grad_w[1, :, 2:], w.detach()[1, :, 2:] / (c * n))
