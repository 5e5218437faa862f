import math

import pytest
import torch

from marl.losses import decompose_kl, gaussian_log_density, mss_log_weights
from marl.model import product_of_experts


@pytest.mark.parametrize("batch,n", [(2, 10), (8, 100), (64, 5000)])
def test_mss_weights_rows_sum_to_one_with_one_over_n_on_diagonal(batch, n):
    w = mss_log_weights(batch, n).exp().double()
    assert torch.allclose(w.sum(1), torch.ones(batch, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(torch.diagonal(w), torch.full((batch,), 1 / n, dtype=torch.float64))
    m = batch - 1
    stratum = w[torch.arange(batch), (torch.arange(batch) + 1) % batch]
    assert torch.allclose(stratum, torch.full((batch,), (n - m) / (n * m), dtype=torch.float64))


def test_mss_weights_are_not_the_buggy_two_column_matrix():
    # the widely copied code puts the 1/N entries down columns 0 and 1 instead of the diagonal
    w = mss_log_weights(6, 50).exp()
    assert not torch.allclose(w[2:, 0], torch.full((4,), 1 / 50))


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_decomposition_sums_to_log_q_minus_log_p(estimator):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(32, 5, generator=g)
    logvar = torch.randn(32, 5, generator=g) * 0.5
    z = mu + torch.exp(0.5 * logvar) * torch.randn(32, 5, generator=g)
    terms = decompose_kl(z, mu, logvar, dataset_size=1000, estimator=estimator)
    assert all(t.shape == (32,) for t in terms)
    log_q = gaussian_log_density(z, mu, logvar).sum(1)
    log_p = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    assert torch.allclose(terms.mi + terms.tc + terms.dim_kl, log_q - log_p, atol=1e-4)


def test_known_answers_when_every_posterior_is_the_prior():
    # q(z|x) = N(0, I) for every x, so the aggregate posterior is the prior.
    n, d = 256, 3
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(1))
    zeros = torch.zeros_like(z)
    # MSS weights sum to 1 per row: the estimate of q(z) is exact and every term is 0.
    t = decompose_kl(z, zeros, zeros, dataset_size=n, estimator="mss")
    for term in t:
        assert term.abs().max() < 1e-4
    # MWS sums B copies of 1/(B·N): log q(z) and each log q(z_k) come out log N too low.
    t = decompose_kl(z, zeros, zeros, dataset_size=n, estimator="mws")
    log_n = math.log(n)
    assert torch.allclose(t.mi, torch.full((n,), log_n), atol=1e-4)
    assert torch.allclose(t.tc, torch.full((n,), (d - 1) * log_n), atol=1e-4)
    assert torch.allclose(t.dim_kl, torch.full((n,), -d * log_n), atol=1e-4)


def test_mi_is_large_for_a_peaked_posterior_of_distinct_means():
    # Well separated, narrow posteriors: q(z) ≈ q(z|x)/N for MSS -> MI ≈ log N.
    n = 64
    mu = torch.arange(n, dtype=torch.float32)[:, None] * 10
    logvar = torch.full_like(mu, -4.0)
    z = mu.clone()
    t = decompose_kl(z, mu, logvar, dataset_size=n, estimator="mss")
    assert torch.allclose(t.mi, torch.full((n,), math.log(n)), atol=1e-3)


def test_product_of_experts_matches_closed_form():
    g = torch.Generator().manual_seed(2)
    mus, logvars = torch.randn(2, 7, 3, generator=g), torch.randn(2, 7, 3, generator=g)
    prec = torch.exp(-logvars)
    for prior in (False, True):
        total = prec.sum(0) + (1.0 if prior else 0.0)
        mu, logvar = product_of_experts(mus, logvars, prior=prior)
        assert torch.allclose(mu, (mus * prec).sum(0) / total, atol=1e-5)
        assert torch.allclose(logvar, -torch.log(total), atol=1e-5)


def test_product_of_two_identical_experts_halves_the_variance():
    mu, logvar = product_of_experts(torch.ones(2, 1, 1), torch.zeros(2, 1, 1))
    assert mu.item() == pytest.approx(1.0)
    assert logvar.exp().item() == pytest.approx(0.5)


# ---------------------------------------------------------------- the γ divergence (issue 9)
def test_posterior_log_variances_never_fall_below_the_floor():
    from marl.model import soft_floor

    x = torch.linspace(-200, 50, 1001)
    y = soft_floor(x, -10.0)
    assert torch.all(y >= -10.0) and torch.all(torch.diff(y) >= 0)
    assert torch.allclose(y[x > 10], x[x > 10], atol=1e-6)  # the identity well above the floor


def test_an_encoder_pushing_log_variances_towards_minus_100_keeps_the_loss_finite(tiny_cfg):
    """Regression: at paper scale γ drove log-variances below −88, exp(−logvar) overflowed in
    the estimators' log-densities and the loss went NaN. Here the encoder asks for −100."""
    from marl.losses import marl_objective
    from marl.model import MARL

    cfg = tiny_cfg.replace(gamma=0.1)
    torch.manual_seed(0)
    model = MARL(cfg)
    d = cfg.latent_dim
    last = model.encoder.net[-1]
    with torch.no_grad():
        for chunk in (1, 3):  # logvar_p and logvar_s
            last.weight[chunk * d:(chunk + 1) * d] = 0.0
            last.bias[chunk * d:(chunk + 1) * d] = -100.0
    x = torch.randn(64, 2, cfg.n_mels, cfg.n_frames)
    out = model(x[:, 0], x[:, 1], torch.randn(3, 64, d))
    terms = marl_objective(out, x[:, 0], x[:, 1], torch.tensor([0.0, 0.0, 0.1, 0.0, 0.0, 0.0]), 32768, "mss")
    assert all(torch.isfinite(t) for t in terms)
    terms.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# ---------------------------------------------------------------- beyond the paper
def test_info_nce_is_log_b_when_pairs_are_indistinguishable_and_near_0_when_each_matches_itself():
    from marl.losses import info_nce

    same = torch.ones(8, 4)
    assert info_nce(same, same, 0.1).item() == pytest.approx(math.log(8), rel=1e-6)
    eye = torch.eye(8)
    assert info_nce(eye, eye, 0.01).item() < 1e-6
    assert info_nce(eye, eye.roll(1, 0), 0.01).item() > 50  # every positive is the least similar


def test_cross_covariance_penalty_known_answers():
    from marl.losses import cross_covariance_penalty

    g = torch.Generator().manual_seed(0)
    p = torch.randn(20000, 3, generator=g)
    s = torch.randn(20000, 5, generator=g)
    assert cross_covariance_penalty(p, s).item() < 1e-3  # independent codes: ~0
    assert cross_covariance_penalty(p, p).item() == pytest.approx(torch.cov(p.T).pow(2).sum().item(), rel=1e-4)
    assert cross_covariance_penalty(3 * p, p).item() == pytest.approx(9 * cross_covariance_penalty(p, p).item(), rel=1e-4)


def test_swap_term_is_each_views_own_reconstruction_when_both_views_are_one_clip(tiny_cfg):
    from marl.losses import marl_objective, reconstruction_nll
    from marl.model import MARL

    torch.manual_seed(0)
    model = MARL(tiny_cfg)
    x = torch.randn(16, tiny_cfg.n_mels, tiny_cfg.n_frames)
    noise = torch.randn(3, 16, tiny_cfg.latent_dim)
    out = model(x, x, noise, swap=True)
    post = model.encode(x)
    own = [model.decoder(torch.cat([v.z_p, post.mu_s], -1)) for v in out.views]
    expected = (reconstruction_nll(own[0], x) + reconstruction_nll(own[1], x)).mean()
    weights = torch.tensor([0.0, 0.0, 0.0, 2.0, 0.0, 0.0])
    terms = marl_objective(out, x, x, weights, 4096, "mss")
    assert terms.swap.item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms.total.item() == pytest.approx((terms.recon + 2.0 * terms.swap).item(), rel=1e-5)


def test_with_the_new_weights_at_zero_the_objective_is_the_papers(tiny_cfg):
    from marl.losses import marl_objective
    from marl.model import MARL

    torch.manual_seed(0)
    model = MARL(tiny_cfg)
    x = torch.randn(16, 2, tiny_cfg.n_mels, tiny_cfg.n_frames)
    out = model(x[:, 0], x[:, 1], torch.randn(3, 16, tiny_cfg.latent_dim))
    t = marl_objective(out, x[:, 0], x[:, 1], torch.tensor([0.3, 0.2, 0.1, 0.0, 0.0, 0.0]), 4096, "mss")
    paper = t.recon + 0.3 * t.mi + 0.2 * t.tc + 0.1 * t.dim_kl
    assert t.total.item() == pytest.approx(paper.item(), rel=1e-6)
    assert t.infonce.item() > 0 and t.orthogonal.item() > 0 and t.swap.item() == 0  # reported, not weighed


def test_weighing_a_term_trains_it_lower_than_leaving_it_out(tiny_cfg):
    from marl.data import load_dataset
    from marl.trainer import Trainer

    data = load_dataset(tiny_cfg)
    plain = Trainer(tiny_cfg, data, torch.device("cpu")).run_epoch()[0]
    assert "loss/swap" not in plain and "loss/infonce" in plain  # swap costs a decoder pass: off
    assert "loss/swap" in Trainer(tiny_cfg.replace(swap=0.5), data, torch.device("cpu")).run_epoch()[0]
    for term, weight in (("infonce", 10.0), ("orthogonal", 10.0)):  # (swap: known answer above)
        # packed with its unweighted twin (same seed), so both report the term
        trainer = Trainer([tiny_cfg, tiny_cfg.replace(**{term: weight})], data, torch.device("cpu"))
        for _ in range(4):
            without, with_term = trainer.run_epoch()
        assert with_term[f"loss/{term}"] < 0.8 * without[f"loss/{term}"], term
