"""What a trained model hears: reconstructions, latent swaps, and spectrograms back to audio.

Codes are posterior means. A swap decodes clip A's private code with clip B's shared code:
A's pitch in B's timbre, if the subspaces hold what they should (a timbre transfer).
"""

from __future__ import annotations

import torch

from marl.config import Config
from marl.data import Split
from marl.model import MARL


@torch.no_grad()
def reconstruct(model: MARL, x: torch.Tensor) -> torch.Tensor:
    """Clips (n, M, T) -> their reconstructions from the posterior means."""
    post = model.encode(x)
    return model.decoder(torch.cat([post.mu_p, post.mu_s], -1)).float()


@torch.no_grad()
def swap(model: MARL, x_private: torch.Tensor, x_shared: torch.Tensor) -> torch.Tensor:
    """Decode each clip of x_private's private code with the matching clip of x_shared's shared code."""
    return model.decoder(torch.cat([model.encode(x_private).mu_p, model.encode(x_shared).mu_s], -1)).float()


def swap_clips(split: Split, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """n clips A and n clips B of another timbre (first views of the split's first pairs)."""
    x, timbre = split.x[:, 0], split.factors["timbre"][:, 0]
    a_idx, b_idx = [], []
    for i in range(len(split)):
        if len(a_idx) == n:
            break
        other = (timbre != timbre[i]).nonzero().squeeze(1)
        other = other[~torch.isin(other, torch.tensor(a_idx + b_idx + [i], dtype=torch.long))]
        if len(other) and i not in b_idx:
            a_idx.append(i)
            b_idx.append(int(other[0]))
    return x[a_idx], x[b_idx]


def to_audio(spec: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Normalised log-mel clips (n, M, T) -> waveforms (n, samples) by Griffin-Lim (torchaudio)."""
    import torchaudio

    power = torch.pow(10.0, (spec * std + mean) / 10.0)  # dB -> power mel
    linear = torchaudio.transforms.InverseMelScale(n_stft=cfg.n_fft // 2 + 1, n_mels=cfg.n_mels,
                                                   sample_rate=cfg.sample_rate)(power)
    griffin = torchaudio.transforms.GriffinLim(n_fft=cfg.n_fft, hop_length=cfg.hop_length, power=2.0, n_iter=64)
    wave = griffin(linear)
    return wave / wave.abs().amax(-1, keepdim=True).clamp_min(1e-8) * 0.9  # audible, never clipped
