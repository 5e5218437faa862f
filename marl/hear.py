"""The HEAR 2021 common API for MARL models: `python -m heareval.embeddings.runner marl.hear --model model.pt`.

Any `model.pt` works (of `marl.train`, or a packed sweep trial's `m<i>/model.pt`: the same
file). The embedding is made of posterior means (no sampling, so it is deterministic):

- `latents="shared"`: the shared code μ_s, what a pair's views have in common (timbre-like);
- `latents="private"`: the private code μ_p, what differs between the views (pitch-like);
- `latents="both"` (the default): private then shared, concatenated: everything the model encodes.

Choosing: the `latents` argument of `load_model` when given (hear-eval-kit passes it with
`--model-options '{"latents": "shared"}'`), else the environment variable MARL_HEAR_LATENTS
when set and not empty, else "both".

Timestamps: one every HOP_SECONDS (50 ms, rounded to whole samples), the first at 0 ms, the
last at or before the end of the sound. Each embedding encodes one clip of the model's own
length (`n_samples_for(cfg)`, 87 ms at the defaults) centred on its timestamp, zeros beyond
the sound's edges. Scene embeddings are the mean of a sound's timestamp embeddings.
"""

from __future__ import annotations

import os

import torch

from marl.encode import load_model as load_marl
from marl.errors import UserError
from marl.features import log_mel, n_samples_for

LATENTS = ("private", "shared", "both")
ENV = "MARL_HEAR_LATENTS"
HOP_SECONDS = 0.050  # HEAR suggests a hop of at most 50 ms for its event tasks
CHUNK = 1024  # windows per encoder call: bounds memory on long sounds, not the result


class HearModel(torch.nn.Module):
    """A MARL model with what HEAR asks of one: `sample_rate`, `scene_embedding_size` and
    `timestamp_embedding_size`. A Module, so that hear-eval-kit's `.to(device)` moves it."""

    def __init__(self, marl, latents: str):
        super().__init__()
        self.marl = marl.eval()
        self.cfg = marl.cfg
        self.latents = latents
        self.sample_rate = int(marl.cfg.sample_rate)
        width = marl.cfg.latent_dim * (2 if latents == "both" else 1)
        self.scene_embedding_size = self.timestamp_embedding_size = width
        self.hop = max(1, round(HOP_SECONDS * self.sample_rate))  # samples between timestamps

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return get_timestamp_embeddings(audio, self)


def pick_latents(latents: str | None) -> str:
    """The argument if given, else $MARL_HEAR_LATENTS if set, else "both": hear-eval-kit's
    older runners pass only a path, so the environment is the one way to choose there."""
    source, value = "latents", latents
    if value is None:
        source, value = ENV, os.environ.get(ENV) or "both"
    if value not in LATENTS:
        raise UserError(f"{source}: must be one of {', '.join(LATENTS)} (got {value!r})")
    return value


def load_model(model_file_path: str = "", latents: str | None = None) -> HearModel:
    """The model in `model_file_path` (a MARL model.pt), on the CPU, in eval mode; `latents`
    chooses the embedding (module docstring; None: $MARL_HEAR_LATENTS, else "both")."""
    latents = pick_latents(latents)  # a bad choice fails before the file is read
    if not str(model_file_path):
        raise UserError("model_file_path: marl has no built-in weights; pass a model.pt")
    return HearModel(load_marl(model_file_path), latents)


def check_audio(audio, model) -> torch.Tensor:
    """(n_sounds, n_samples) float32, or a one-line UserError."""
    if not isinstance(model, HearModel):
        raise UserError("model: pass what marl.hear.load_model returns")
    if not isinstance(audio, torch.Tensor):
        raise UserError(f"audio: must be a torch.Tensor (n_sounds, n_samples), got {type(audio).__name__}")
    if audio.dim() != 2:
        raise UserError(f"audio: must be a 2-D tensor (n_sounds, n_samples), got shape {tuple(audio.shape)}")
    return audio.float()


def timestamps_ms(n_samples: int, model: HearModel) -> torch.Tensor:
    """Window centres in ms: every `model.hop` samples from 0 to at most n_samples. Computed
    from the integer sample index, so the spacing is exact and never drifts."""
    index = torch.arange(n_samples // model.hop + 1, dtype=torch.float64)
    return (index * (model.hop * 1000.0 / model.sample_rate)).float()


def windows(audio: torch.Tensor, length: int, hop: int) -> torch.Tensor:
    """(n_sounds, n_timestamps, length): window k starts `length // 2` before sample k·hop,
    the audio zero-padded on both sides. A strided view, nothing copied."""
    padded = torch.nn.functional.pad(audio, (length // 2, length - length // 2))
    return padded.unfold(-1, length, hop)


@torch.no_grad()
def encode_clips(model: HearModel, clips: torch.Tensor) -> torch.Tensor:
    """(n, D) embeddings of n clips at the model's rate. Row i depends on clip i alone: the
    log-mel's 80 dB floor is per clip and the encoder (Linear, Conv2d, SiLU) has no layer that
    mixes a batch's rows (no batch norm)."""
    marl = model.marl
    device = next(marl.parameters()).device
    x = (log_mel(clips.cpu(), model.cfg) - marl.input_mean.cpu()) / marl.input_std.cpu()
    post = marl.encode(x.to(device))
    parts = {"private": [post.mu_p], "shared": [post.mu_s], "both": [post.mu_p, post.mu_s]}
    return torch.cat(parts[model.latents], dim=-1).float()


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (n_sounds, n_timestamps, D) float32 and their timestamps (n_sounds,
    n_timestamps) in ms, for audio (n_sounds, n_samples) at model.sample_rate. Returned on
    the audio's device."""
    audio = check_audio(audio, model)
    model.marl.eval()  # eval mode whatever the caller did to the wrapper
    n_sounds, n_samples = audio.shape
    wins = windows(audio.cpu(), n_samples_for(model.cfg), model.hop)  # the mel runs on the CPU
    n_t = wins.shape[1]
    flat = torch.arange(n_sounds * n_t)  # (sound, timestamp) pairs, a chunk of them at a time
    chunks = [encode_clips(model, wins[idx // n_t, idx % n_t]) for idx in flat.split(CHUNK) if len(idx)]
    emb = torch.cat(chunks) if chunks else torch.empty(0, model.timestamp_embedding_size)
    emb = emb.reshape(n_sounds, n_t, model.timestamp_embedding_size).to(audio.device)
    times = timestamps_ms(n_samples, model).repeat(n_sounds, 1).to(audio.device)
    return emb, times


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, D) float32: each sound's timestamp embeddings averaged over time, so a scene
    weighs every 50 ms of the sound alike."""
    emb, _ = get_timestamp_embeddings(audio, model)
    return emb.mean(dim=1)
