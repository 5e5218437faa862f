"""The multi-view VAE of the paper's block diagram (spec §2).

One encoder (shared by both views) maps a log-mel to a private and a shared Gaussian; the two
shared Gaussians are fused by a product of experts; one decoder (shared by both views)
rebuilds view j from concat(z_pj, z_s).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from marl.config import Config


class Posterior(NamedTuple):
    mu_p: torch.Tensor
    logvar_p: torch.Tensor
    mu_s: torch.Tensor
    logvar_s: torch.Tensor


class ViewOutput(NamedTuple):
    """What the objective needs for one view j."""

    x_hat: torch.Tensor
    z_p: torch.Tensor
    mu_p: torch.Tensor
    logvar_p: torch.Tensor
    mu_s: torch.Tensor  # this view's own (unfused) shared mean
    x_swap: torch.Tensor | None = None  # decoded from (z_pj, the other view's shared mean)


class PairOutput(NamedTuple):
    views: tuple[ViewOutput, ViewOutput]
    z_s: torch.Tensor
    mu_s: torch.Tensor  # fused by the product of experts
    logvar_s: torch.Tensor
    x_logvar: torch.Tensor | None = None  # the decoder's learned log σ² (likelihood "learned")


def product_of_experts(mus: torch.Tensor, logvars: torch.Tensor, prior: bool = False):
    """Precision-weighted fusion of Gaussians stacked on dim 0: (E, ..., D) -> (..., D).

    precision = Σ_e 1/σ_e², mean = Σ_e μ_e/σ_e² / precision; an optional N(0, I) expert adds
    precision 1 and mean 0.
    """
    if prior:
        mus = torch.cat([torch.zeros_like(mus[:1]), mus])
        logvars = torch.cat([torch.zeros_like(logvars[:1]), logvars])
    log_precision = torch.logsumexp(-logvars, dim=0)
    weights = torch.exp(-logvars - log_precision)  # σ_e⁻² / Σ σ⁻², stable in log space
    return (weights * mus).sum(0), -log_precision


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.net = _mlp([n_in, 2 * hidden, hidden, n_out])

    def forward(self, x):
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    def __init__(self, n_in: int, hidden: int, shape: tuple[int, int]):
        super().__init__()
        self.shape = shape
        self.net = _mlp([n_in, hidden, 2 * hidden, shape[0] * shape[1]])

    def forward(self, z):
        return self.net(z).view(-1, *self.shape)


class ConvEncoder(nn.Module):
    """Three stride-2 convolutions (each halves mels and frames), then a linear head."""

    def __init__(self, shape: tuple[int, int], hidden: int, n_out: int, channels: int = 32):
        super().__init__()
        c = channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 3, 2, 1), nn.SiLU())
        flat = 2 * c * (shape[0] // 8) * (shape[1] // 8)
        self.head = _mlp([flat, hidden, n_out])

    def forward(self, x):
        return self.head(self.conv(x[:, None]).flatten(1))


class ConvDecoder(nn.Module):
    def __init__(self, n_in: int, hidden: int, shape: tuple[int, int], channels: int = 32):
        super().__init__()
        c = channels
        self.grid = (2 * c, shape[0] // 8, shape[1] // 8)
        self.head = nn.Sequential(_mlp([n_in, hidden, self.grid[0] * self.grid[1] * self.grid[2]]), nn.SiLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * c, 2 * c, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(c, 1, 4, 2, 1))

    def forward(self, z):
        return self.deconv(self.head(z).view(-1, *self.grid))[:, 0]


def soft_floor(x: torch.Tensor, floor: float) -> torch.Tensor:
    """floor + softplus(x − floor): x itself well above the floor, never below it, smooth."""
    return floor + F.softplus(x - floor)


class MARL(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d, shape = cfg.latent_dim, (cfg.n_mels, cfg.n_frames)
        self.latent_dim = d
        self.poe_prior = cfg.poe_prior
        self.logvar_min = cfg.logvar_min
        if cfg.arch == "mlp":
            self.encoder = MLPEncoder(shape[0] * shape[1], cfg.hidden, 4 * d)
            self.decoder = MLPDecoder(2 * d, cfg.hidden, shape)
        else:
            self.encoder = ConvEncoder(shape, cfg.hidden, 4 * d)
            self.decoder = ConvDecoder(2 * d, cfg.hidden, shape)
        # σ-VAE: one decoder variance for every bin, learned with the model (log σ² = 0: `sum`)
        self.x_logvar = nn.Parameter(torch.zeros(())) if cfg.likelihood == "learned" else None

    def encode(self, x: torch.Tensor) -> Posterior:
        """One view alone: its private and (unfused) shared Gaussian.

        Both log-variances are softly floored at cfg.logvar_min. Unbounded, they drift below
        −88 under γ at paper scale and exp(−logvar) in the estimators' log-densities overflows
        (docs/reproduction.md, "Why γ diverged").
        """
        # .float(): under autocast the layers may run in bf16; everything after them is fp32
        mu_p, logvar_p, mu_s, logvar_s = self.encoder(x).float().chunk(4, dim=-1)
        return Posterior(mu_p, soft_floor(logvar_p, self.logvar_min),
                         mu_s, soft_floor(logvar_s, self.logvar_min))

    def fuse(self, post1: Posterior, post2: Posterior):
        return product_of_experts(torch.stack([post1.mu_s, post2.mu_s]),
                                  torch.stack([post1.logvar_s, post2.logvar_s]), self.poe_prior)

    @torch.no_grad()
    def subspace_posteriors(self, x1: torch.Tensor, x2: torch.Tensor, chunk: int = 4096):
        """(mu, logvar), each (3, B, D): the posteriors of view 0's private code, view 1's
        private code and the fused shared code, for B pairs, as training sees them."""
        mus, logvars = [], []
        for a, b in zip(x1.split(chunk), x2.split(chunk)):
            p1, p2 = self.encode(a), self.encode(b)
            mu_s, logvar_s = self.fuse(p1, p2)
            mus.append(torch.stack([p1.mu_p, p2.mu_p, mu_s]))
            logvars.append(torch.stack([p1.logvar_p, p2.logvar_p, logvar_s]))
        return torch.cat(mus, 1), torch.cat(logvars, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, noise: torch.Tensor, swap: bool = False) -> PairOutput:
        """noise: standard normal draws (3, B, D) for z_p1, z_p2, z_s — passed in so that the
        forward pass is a pure function of (parameters, batch, noise). With swap, each view is
        also decoded from its private sample and the *other* view's shared mean."""
        b = x1.shape[0]
        both = self.encode(torch.cat([x1, x2]))  # one encoder call for both views
        post1 = Posterior(*(t[:b] for t in both))
        post2 = Posterior(*(t[b:] for t in both))
        mu_s, logvar_s = self.fuse(post1, post2)
        z_s = mu_s + torch.exp(0.5 * logvar_s) * noise[2]
        z_p = [p.mu_p + torch.exp(0.5 * p.logvar_p) * e for p, e in zip((post1, post2), noise[:2])]
        codes = [torch.cat([z_p[0], z_s], -1), torch.cat([z_p[1], z_s], -1)]
        if swap:
            codes += [torch.cat([z_p[0], post2.mu_s], -1), torch.cat([z_p[1], post1.mu_s], -1)]
        x_hat = self.decoder(torch.cat(codes)).float().split(b)  # one decoder call for all
        swapped = x_hat[2:] if swap else (None, None)
        views = tuple(ViewOutput(xh, z, p.mu_p, p.logvar_p, p.mu_s, xs)
                      for xh, z, p, xs in zip(x_hat[:2], z_p, (post1, post2), swapped))
        return PairOutput(views, z_s, mu_s, logvar_s, self.x_logvar)
