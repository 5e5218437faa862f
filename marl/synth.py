"""The synthetic source (spec §1): pairs of band-limited tones that share a waveform type and
differ in pitch class.

A pair is two clips of one waveform type at two frequencies that fall in different pitch
classes. Synthesis is band-limited: only harmonics below Nyquist are summed, so a square wave
at 6 kHz is its fundamental plus its 3rd harmonic, never an aliased mess.
"""

from __future__ import annotations

import math

import torch

from marl.config import Config
from marl.features import n_samples_for

TIMBRES = ("sine", "triangle", "sawtooth", "square")


def harmonic_amplitudes(timbre: int, n_harmonics: int) -> torch.Tensor:
    """Fourier-series amplitudes of harmonics 1..n_harmonics for a unit-amplitude waveform."""
    k = torch.arange(1, n_harmonics + 1, dtype=torch.float64)
    odd = (k % 2 == 1).double()
    name = TIMBRES[timbre]
    if name == "sine":
        return (k == 1).double()
    if name == "triangle":
        return odd * (8 / math.pi**2) * torch.where((k - 1) % 4 == 0, 1.0, -1.0) / k**2
    if name == "sawtooth":
        return (2 / math.pi) * torch.where(k % 2 == 1, 1.0, -1.0) / k
    return odd * (4 / math.pi) / k  # square


def synthesize(timbre: torch.Tensor, frequency: torch.Tensor, amplitude: torch.Tensor,
               phase: torch.Tensor, n_samples: int, sample_rate: int,
               chunk: int = 512) -> torch.Tensor:
    """Band-limited waveforms, shape (n, n_samples).

    Clips are processed in chunks sorted by timbre and frequency so that each chunk sums only
    the harmonics its lowest tone needs (a 6 kHz tone has 3 below Nyquist, a 200 Hz one 110).
    """
    n = timbre.numel()
    out = torch.empty(n, n_samples)
    t = torch.arange(n_samples, dtype=torch.float64) / sample_rate
    nyquist = sample_rate / 2
    order = torch.argsort(timbre.double() * 1e6 + frequency.double())
    for start in range(0, n, chunk):
        idx = order[start:start + chunk]
        f = frequency[idx].double()
        theta = 2 * math.pi * f[:, None] * t[None, :] + phase[idx].double()[:, None]
        wave = torch.zeros(len(idx), n_samples, dtype=torch.float64)
        for tb in timbre[idx].unique().tolist():
            rows = (timbre[idx] == tb).nonzero().squeeze(1)
            n_harm = int(nyquist // float(f[rows].min()))
            amps = harmonic_amplitudes(tb, n_harm)
            theta_rows, f_rows = theta[rows], f[rows]
            acc = torch.zeros_like(theta_rows)
            for k in range(1, n_harm + 1):
                if amps[k - 1] == 0:
                    continue
                below = (k * f_rows < nyquist).double()[:, None]  # band limit per clip
                acc += amps[k - 1] * below * torch.sin(k * theta_rows)
            wave[rows] = acc
        out[idx] = (amplitude[idx].double()[:, None] * wave).float()
    return out


def pitch_class(frequency: torch.Tensor, f_min: float, f_max: float, n_classes: int) -> torch.Tensor:
    """Equal-width bins in log-frequency."""
    pos = (torch.log(frequency) - math.log(f_min)) / (math.log(f_max) - math.log(f_min))
    return (pos * n_classes).floor().clamp(0, n_classes - 1).long()


def sample_factors(n_pairs: int, cfg: Config, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Factors for n pairs: one timbre per pair, two distinct pitch classes, uniform log-f in class."""
    timbre = torch.randint(len(TIMBRES), (n_pairs,), generator=gen)
    c1 = torch.randint(cfg.n_pitch_classes, (n_pairs,), generator=gen)
    shift = torch.randint(1, cfg.n_pitch_classes, (n_pairs,), generator=gen)
    classes = torch.stack([c1, (c1 + shift) % cfg.n_pitch_classes], dim=1)
    width = (math.log(cfg.f_max) - math.log(cfg.f_min)) / cfg.n_pitch_classes
    log_f = math.log(cfg.f_min) + (classes + torch.rand(n_pairs, 2, generator=gen, dtype=torch.float64)) * width
    frequency = torch.exp(log_f)
    return {
        "timbre": timbre[:, None].expand(n_pairs, 2).clone(),
        "frequency": frequency,
        # recomputed from the frequency so the label is exactly what the binning rule says
        "pitch_class": pitch_class(frequency, cfg.f_min, cfg.f_max, cfg.n_pitch_classes),
        "amplitude": cfg.amp_min + (cfg.amp_max - cfg.amp_min) * torch.rand(n_pairs, 2, generator=gen, dtype=torch.float64),
        "phase": 2 * math.pi * torch.rand(n_pairs, 2, generator=gen, dtype=torch.float64),
    }


def pairs(n_pairs: int, cfg: Config, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    """n pairs of waveforms (n, 2, n_samples) and their factors, each (n, 2)."""
    factors = sample_factors(n_pairs, cfg, gen)
    flat = {k: v.reshape(-1) for k, v in factors.items()}
    waves = synthesize(flat["timbre"], flat["frequency"], flat["amplitude"], flat["phase"],
                       n_samples_for(cfg), cfg.sample_rate)
    return waves.reshape(n_pairs, 2, -1), factors
