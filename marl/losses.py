"""The MARL objective (spec §3), to be read beside the paper's equation.

    L = Σ_{j=1,2} [ log p(x^j | z_pj, z_s)
                    − α (MI(z_s) + MI(z_pj))
                    − β (TC(z_s) + TC(z_pj))
                    − γ (dimKL(z_s) + dimKL(z_pj)) ]

MI, TC and dim-KL are the β-TCVAE decomposition of each subspace's KL (Chen et al. 2018):

    MI     = E[log q(z|x) − log q(z)]
    TC     = E[log q(z) − Σ_k log q(z_k)]
    dimKL  = E[Σ_k log q(z_k) − log p(z)]

so MI + TC + dimKL = log q(z|x) − log p(z) sample by sample. log q(z) and log q(z_k) are
estimated on the minibatch. As the paper writes it, the z_s terms sit inside the sum over views,
so they count twice; we implement it as written. We minimise −L averaged over the batch.

Beyond the paper (each weight 0 by default, so the objective above is unchanged), added to −L:

    + w_swap · Σ_j −log p(x^j | z_pj, μ_s^(other view))     cross-view swap reconstruction
    + w_nce  · InfoNCE(μ_s^(1), μ_s^(2); τ)                   views of a pair are positives,
                                                               other pairs in the batch negatives
    + w_orth · Σ_j ‖Cov(μ_pj, μ_s^(j))‖²_F                    private ⟂ shared (cross-covariance)

with μ_s^(j) view j's own shared mean (before the product of experts) and τ = `temperature`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch.nn import functional as F

from marl.mixture import LOG_2PI, mixture_log_density
from marl.model import PairOutput



class KLTerms(NamedTuple):
    """Per-sample terms, each of shape (batch,)."""

    mi: torch.Tensor
    tc: torch.Tensor
    dim_kl: torch.Tensor


class LossTerms(NamedTuple):
    """Batch means; `total` is what the optimiser minimises. `swap` is 0 when not computed
    (no member of the trainer weighs it)."""

    total: torch.Tensor
    recon: torch.Tensor
    mi: torch.Tensor
    tc: torch.Tensor
    dim_kl: torch.Tensor
    swap: torch.Tensor
    infonce: torch.Tensor
    orthogonal: torch.Tensor


def gaussian_log_density(z, mu, logvar):
    """log N(z; mu, exp(logvar)), elementwise."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def mss_log_weights(batch_size: int, dataset_size: int, device=None) -> torch.Tensor:
    """log of the minibatch stratified sampling weights (Chen et al. 2018, appendix C.2).

    Row i weighs the batch's samples when estimating q(z_i), M = B − 1: 1/N on the diagonal
    (sample i itself), (N − M)/(N·M) on the stratum element, the next sample in the batch
    (column i+1, wrapping to 0), and 1/M elsewhere. Each row sums to 1.
    """
    n, m = dataset_size, batch_size - 1
    weights = torch.full((batch_size, batch_size), 1.0 / m, device=device)
    rows = torch.arange(batch_size, device=device)
    weights[rows, rows] = 1.0 / n
    weights[rows, (rows + 1) % batch_size] = (n - m) / (n * m)
    return weights.log()


class Bank(NamedTuple):
    """K entries drawn (uniformly, with replacement) from a memory bank of every training
    example's detached posterior, one subspace: mu, logvar (K, D); own (B, K): True where an
    entry is the batch sample's own example, which its own term already counts."""

    mu: torch.Tensor
    logvar: torch.Tensor
    own: torch.Tensor | None = None


def estimator_log_weights(estimator: str, batch_size: int, dataset_size: int, device=None,
                          dtype=torch.float32) -> torch.Tensor:
    """(B, B) log weights of the batch's posteriors in the estimate of log q(z_i), row i.

    mws: 1/(B·N) everywhere (the batch stands for N draws); mss: stratified with the dataset's
    N; mss_batch: stratified as if N were B (the batch is the whole population, so the own
    term weighs 1/B rather than 1/N: biased, but never paid for narrow posteriors).
    """
    if estimator == "mws":
        return torch.full((batch_size, batch_size), -math.log(batch_size * dataset_size),
                          device=device, dtype=dtype)
    if estimator == "mss":
        return mss_log_weights(batch_size, dataset_size, device).to(dtype)
    if estimator == "mss_batch":
        return mss_log_weights(batch_size, batch_size, device).to(dtype)
    raise ValueError(f"unknown estimator {estimator!r}")


def decompose_kl(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                 dataset_size: int, estimator: str, bank: Bank | None = None) -> KLTerms:
    """β-TCVAE decomposition of KL(q(z|x) || N(0, I)) for a batch of samples z ~ q(z|x).

    z, mu, logvar: (B, D). Returns per-sample MI, TC and dimension-wise KL, each (B,).

    With estimator "bank", q(z_i) and q(z_ik) mix the sample's own posterior (weight 1/N, with
    gradient) with the K bank entries (weight 1/K each, detached; entries of the sample's own
    example masked out): an unbiased estimate of (1/N)·Σ_{n≠i} q(z_i | x_n), so the mixture's
    weights sum to 1 in expectation. Left in, the own example (drawn with probability ≈ K/N)
    would weigh N/K times its due and read log q(z) too high (MI −0.28 nats at N = 32768).
    """
    log_qz_given_x = gaussian_log_density(z, mu, logvar).sum(1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    if estimator == "bank":
        if bank is None:
            raise ValueError("estimator 'bank' needs the drawn bank entries")
        own = gaussian_log_density(z, mu, logvar)  # (B, D)
        log_w = torch.full((z.shape[0], bank.mu.shape[0]), -math.log(bank.mu.shape[0]), device=z.device, dtype=z.dtype)
        if bank.own is not None:
            # a finite "minus infinity": a row whose every entry is masked must not turn
            # logsumexp's gradient into NaN (exp(−inf − (−inf)))
            log_w = log_w.masked_fill(bank.own, torch.finfo(z.dtype).min / 2)
        own_w = -math.log(dataset_size)
        bank_qz, bank_qzk = mixture_log_density(z, bank.mu, bank.logvar, log_w)
        log_qz = torch.logaddexp(own.sum(1) + own_w, bank_qz)
        log_prod_qzk = torch.logaddexp(own + own_w, bank_qzk).sum(1)
    else:
        log_w = estimator_log_weights(estimator, z.shape[0], dataset_size, z.device, z.dtype)
        log_qz, log_qzk = mixture_log_density(z, mu, logvar, log_w)
        log_prod_qzk = log_qzk.sum(1)
    return KLTerms(mi=log_qz_given_x - log_qz, tc=log_qz - log_prod_qzk,
                   dim_kl=log_prod_qzk - log_pz)


def reconstruction_nll(x_hat: torch.Tensor, x: torch.Tensor, likelihood: str = "sum",
                       x_logvar: torch.Tensor | None = None) -> torch.Tensor:
    """−log p(x | z) per sample, constants dropped, for the decoder likelihood:

    sum      unit-variance Gaussian: ½·Σ_bins (x̂ − x)² (ours until issue 19)
    mean     the mean squared error over bins, mean (x̂ − x)², as `F.mse_loss` computes it: the
             KL terms weigh M/2 times more than under `sum` (M = n_mels·n_frames bins)
    learned  a Gaussian with one learned variance σ² for all bins (σ-VAE, Rybkin et al. 2021):
             ½·Σ (x̂ − x)²/σ² + (M/2)·log σ²; the KL terms weigh σ² times what they weigh
             under `sum`, and σ² settles at the mean squared error (~0.006–0.015 per bin at
             paper scale on unit-variance bins: 70–170× less than `sum`)
    """
    squared = (x_hat - x).pow(2).flatten(1)
    if likelihood == "sum":
        return 0.5 * squared.sum(1)
    if likelihood == "mean":
        return squared.mean(1)
    if likelihood == "learned":
        return 0.5 * (squared.sum(1) * torch.exp(-x_logvar) + squared.shape[1] * x_logvar)
    raise ValueError(f"unknown likelihood {likelihood!r}")


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of (B, D) codes: row i of a and row i of b are positives, every other
    row of the batch a negative; cosine similarity over `temperature`. log B when the codes
    cannot tell pairs apart, → 0 when each matches only its own."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def cross_covariance_penalty(p: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """‖Cov(p, s)‖²_F of (B, D_p) and (B, D_s) codes over the batch: 0 when every private
    dimension is uncorrelated with every shared one."""
    p, s = p - p.mean(0), s - s.mean(0)
    return ((p.T @ s) / (p.shape[0] - 1)).pow(2).sum()


def marl_objective(out: PairOutput, x1: torch.Tensor, x2: torch.Tensor,
                   weights: torch.Tensor, dataset_size: int, estimator: str,
                   temperature: float = 0.1, likelihood: str = "sum",
                   banks: tuple[Bank, Bank, Bank] | None = None) -> LossTerms:
    """The negated paper objective, averaged over the batch, plus the optional terms.

    weights: tensor (α, β, γ, w_swap, w_nce, w_orth), a tensor rather than floats so the step
    can be vmapped over configurations. The reported recon/mi/tc/dim_kl are the unweighted
    terms as they enter the sum over views (shared terms twice); swap, infonce and orthogonal
    unweighted too. banks: for estimator "bank", K entries of the (view 0 private, view 1
    private, fused) banks.
    """
    alpha, beta, gamma = weights[0], weights[1], weights[2]
    banks = banks or (None, None, None)
    shared = decompose_kl(out.z_s, out.mu_s, out.logvar_s, dataset_size, estimator, banks[2])
    recon = mi = tc = dim_kl = 0.0
    for view, x, bank in zip(out.views, (x1, x2), banks[:2]):
        private = decompose_kl(view.z_p, view.mu_p, view.logvar_p, dataset_size, estimator, bank)
        recon = recon + reconstruction_nll(view.x_hat, x, likelihood, out.x_logvar)
        mi = mi + shared.mi + private.mi
        tc = tc + shared.tc + private.tc
        dim_kl = dim_kl + shared.dim_kl + private.dim_kl
    recon, mi, tc, dim_kl = recon.mean(), mi.mean(), tc.mean(), dim_kl.mean()
    v1, v2 = out.views
    swap = (reconstruction_nll(v1.x_swap, x1, likelihood, out.x_logvar)
            + reconstruction_nll(v2.x_swap, x2, likelihood, out.x_logvar)).mean() \
        if v1.x_swap is not None else torch.zeros((), device=x1.device)
    infonce = info_nce(v1.mu_s, v2.mu_s, temperature)
    orthogonal = cross_covariance_penalty(v1.mu_p, v1.mu_s) + cross_covariance_penalty(v2.mu_p, v2.mu_s)
    total = (recon + alpha * mi + beta * tc + gamma * dim_kl
             + weights[3] * swap + weights[4] * infonce + weights[5] * orthogonal)
    return LossTerms(total, recon, mi, tc, dim_kl, swap, infonce, orthogonal)
