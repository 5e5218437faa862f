"""The estimators' dim-KL against the exact value on fixed posteriors (issue 19's table):
`python benchmarks/estimator_bias.py`, a Markdown table on stdout.

Means from N(0, I), D = 8, N = 32768 posteriors, every log σ² set to the column's value;
1024 samples z (one from each of 1024 posteriors) in batches of B = 256. "slope" is
d(dim-KL)/d(log σ²) at −10 by central differences (±0.5): positive means the estimate pays
the encoder for narrowing its posteriors.
"""

from __future__ import annotations

import torch

from marl.aggregate import exact_decomposition
from marl.losses import Bank, decompose_kl

N, D, B, M = 32768, 8, 256, 1024
ESTIMATORS = (("mss", 0), ("mws", 0), ("mss_batch", 0), ("bank", 4096), ("bank", 8192))
LOGVARS = (0.0, -4.0, -10.0, -12.0)


def dim_kl(logvar: float, seed: int = 0) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(N, D, generator=g)
    lv = torch.full((N, D), logvar)
    index = torch.randperm(N, generator=g)[:M]
    z = mu[index] + torch.exp(0.5 * lv[index]) * torch.randn(M, D, generator=g)
    out = {"exact": float(exact_decomposition(z, mu[index], lv[index], mu, lv).dim_kl.mean())}
    for estimator, k in ESTIMATORS:
        parts = []
        for batch in torch.arange(M).split(B):
            bank = None
            if estimator == "bank":
                picks = torch.randint(N, (k,), generator=g)
                bank = Bank(mu[picks], lv[picks], index[batch][:, None] == picks[None])
            parts.append(decompose_kl(z[batch], mu[index][batch], lv[index][batch], N, estimator, bank).dim_kl)
        out[f"{estimator} K={k}" if k else estimator] = float(torch.cat(parts).mean())
    return out


def main() -> None:
    columns = {lv: dim_kl(lv) for lv in LOGVARS}
    up, down = dim_kl(-9.5), dim_kl(-10.5)
    slope = {name: up[name] - down[name] for name in up}
    names = list(columns[LOGVARS[0]])
    print("| estimator | " + " | ".join(f"log σ² {lv:g}" for lv in LOGVARS) + " | slope at −10 |")
    print("|---" * (len(LOGVARS) + 2) + "|")
    for name in names:
        print(f"| {name} | " + " | ".join(f"{columns[lv][name]:.2f}" for lv in LOGVARS) + f" | {slope[name]:+.2f} |")


if __name__ == "__main__":
    main()
