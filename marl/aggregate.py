"""The β-TCVAE decomposition over the whole aggregate posterior: what the minibatch
estimators of `marl.losses` estimate, computed without them.

With q(z) = (1/N) Σ_n q(z | x_n) over all N training posteriors (diagonal Gaussians),

    log q(z)   = logsumexp_n Σ_k log q(z_k | x_n) − log N
    log q(z_k) = logsumexp_n log q(z_k | x_n) − log N

are exact for any z; MI, TC and dim-KL are their expectations over z ~ q(z | x), estimated on
M samples z (one per posterior of M training examples). Only that Monte-Carlo average is
approximate; its standard error is the terms' spread over sqrt(M). Pure torch, chunked so that
no (rows, N, D) block exceeds CHUNK_ELEMENTS (CPU_CHUNK_ELEMENTS on a CPU), on whatever device
the tensors live.
"""

from __future__ import annotations

import math

import torch

from marl.losses import KLTerms, gaussian_log_density

CHUNK_ELEMENTS = 1 << 24  # 64 MB of fp32 per block of log-densities on a GPU
# on a CPU, 4 MB blocks stay in its caches between the passes over them: 2x faster (1.39 -> 0.70 s
# for 512 samples x 16384 posteriors x 8 dimensions, 1 thread; docs/performance.md)
CPU_CHUNK_ELEMENTS = 1 << 20


def aggregate_log_densities(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
    """log q(z) (M,) and log q(z_k) (M, D) under the mixture of the N posteriors mu, logvar (N, D)."""
    n, d = mu.shape
    rows = max(1, (CPU_CHUNK_ELEMENTS if z.device.type == "cpu" else CHUNK_ELEMENTS) // (n * d))
    log_qz, log_qzk = [], []
    for part in z.split(rows):
        mat = gaussian_log_density(part[:, None], mu[None], logvar[None])  # (rows, N, D)
        log_qz.append(torch.logsumexp(mat.sum(2), dim=1) - math.log(n))
        log_qzk.append(torch.logsumexp(mat, dim=1) - math.log(n))
    return torch.cat(log_qz), torch.cat(log_qzk)


def exact_decomposition(z: torch.Tensor, mu_z: torch.Tensor, logvar_z: torch.Tensor,
                        mu: torch.Tensor, logvar: torch.Tensor) -> KLTerms:
    """Per-sample MI, TC and dim-KL (each (M,)) of samples z (M, D) drawn from their own
    posteriors (mu_z, logvar_z), against the aggregate posterior of all N posteriors (mu, logvar)."""
    log_qz_given_x = gaussian_log_density(z, mu_z, logvar_z).sum(1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    log_qz, log_qzk = aggregate_log_densities(z, mu, logvar)
    log_prod_qzk = log_qzk.sum(1)
    return KLTerms(mi=log_qz_given_x - log_qz, tc=log_qz - log_prod_qzk, dim_kl=log_prod_qzk - log_pz)
