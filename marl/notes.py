"""What every real-instrument source yields: a bank of notes (waveforms and their labels),
read from audio files or rendered; marl/soundfont.py and marl/sources.py fill it."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from marl.errors import UserError

ONSET_SKIP, OFFSET_MAX = 0.05, 0.6  # seconds: where clips may start inside a note
# NSynth's own split folders, and the split each one is
NSYNTH_SPLITS = {"nsynth-train": "train", "nsynth-valid": "val", "nsynth-test": "test"}


@dataclass
class NoteBank:
    """Notes as mono waveforms (one tensor each, at the config's sample rate) and their labels:
    `timbre` and `pitch_class` (class indices), plus other factors, each (n_notes,). `split`:
    each note's split id (marl.splits.SPLIT_IDS) where the data fix it (NSynth's own folders);
    `midi`: the MIDI pitch of each pitch class; `skipped`: notes left out, and why;
    `timbre_names`: the name of each timbre class."""

    waves: list[torch.Tensor]
    factors: dict[str, torch.Tensor]
    n_classes: dict[str, int]
    midi: list[int]
    split: torch.Tensor | None = None
    skipped: tuple[str, ...] = ()
    timbre_names: tuple[str, ...] = ()

    def subset(self, keep: torch.Tensor) -> "NoteBank":
        index = keep.nonzero().squeeze(1)
        return NoteBank([self.waves[i] for i in index.tolist()], {k: v[index] for k, v in self.factors.items()},
                        self.n_classes, self.midi, None if self.split is None else self.split[index], self.skipped,
                        self.timbre_names)


# ---------------------------------------------------------------- audio
def _mono(data, rate: int, sample_rate: int) -> torch.Tensor:
    """soundfile's (samples, channels) array -> mono float32 at sample_rate."""
    import torchaudio

    wave = torch.from_numpy(data).mean(1)
    return torchaudio.functional.resample(wave, rate, sample_rate) if rate != sample_rate else wave


def _unreadable(path, err: Exception) -> UserError:
    return UserError(f"{path}: not readable audio ({str(err).splitlines()[0][:120]})")


def read_audio(path: Path, sample_rate: int) -> torch.Tensor:
    """Any file soundfile reads, mixed to mono and resampled: (n_samples,) float32."""
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as err:  # soundfile.LibsndfileError is a RuntimeError
        raise _unreadable(path, err) from None
    return _mono(data, rate, sample_rate)


def check_audio(paths: list[Path]) -> None:
    """Fail in one line, before any work, on a missing or unreadable audio file (header only)."""
    import soundfile

    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such audio file")
        try:
            soundfile.info(str(path))
        except (OSError, RuntimeError) as err:
            raise _unreadable(path, err) from None


def decode_wav(data: bytes, sample_rate: int) -> torch.Tensor:
    import soundfile

    return _mono(*soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True), sample_rate)
