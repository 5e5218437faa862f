"""What a clip is to the model: its length in samples and its log-mel spectrogram. Below every
source (marl.synth, marl.sources) and marl.data, which builds datasets from their waveforms."""

from __future__ import annotations

import torch
import torchaudio

from marl.config import Config


def log_mel(waves: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Log-mel spectrograms in decibels, (n, n_mels, n_frames), floor 80 dB below each clip's peak."""
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels)
    to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0)
    out = []
    for chunk in waves.split(1024):
        out.append(to_db(mel(chunk)[:, None])[:, 0])  # (n, 1, m, t): top_db per clip, not per batch
    return torch.cat(out)


def n_samples_for(cfg: Config) -> int:
    return (cfg.n_frames - 1) * cfg.hop_length  # centred STFT gives exactly n_frames frames
