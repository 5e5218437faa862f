"""`python -m marl.encode MODEL AUDIO [AUDIO ...] --out latents.parquet`

Loads a trained model (`model.pt` of `marl.train`, or `m<i>/model.pt` of a packed sweep trial:
config, weights and input normalisation, no data cache needed), cuts each audio file — any
format soundfile reads, mixed to mono and resampled to the model's rate — into clips of the
model's length, and writes one row per clip: file, offset (seconds), the private code
(`private_0` …) and the shared code (`shared_0` …), posterior means.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import torch

from marl.config import Config
from marl.errors import UserError, exit_on_user_error
from marl.model import MARL


def load_model(path, device: str | torch.device = "cpu") -> MARL:
    """A trained MARL in eval mode, with `cfg` (its Config) and `input_mean` / `input_std` (the
    per-mel normalisation of its training data) attached."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model: no such file {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        cfg = Config.from_dict(state["config"])
        model = MARL(cfg).to(device)
        model.load_state_dict(state["model"])
        model.input_mean, model.input_std = state["normalisation"]["mean"], state["normalisation"]["std"]
    except UserError:
        raise
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, TypeError, AttributeError) as err:
        # not a zip / not torch's (RuntimeError, UnpicklingError), cut off (EOFError), another
        # program's dict (KeyError, TypeError), weights of another shape (RuntimeError)
        raise UserError(f"model: {path} is not a MARL model.pt ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:120] if str(err) else ''})") from None
    model.cfg = cfg
    return model.eval()


def frame(wave: torch.Tensor, length: int, hop: int) -> tuple[torch.Tensor, list[int]]:
    """Clips (n, length) cut every `hop` samples, the last one zero-padded; their start samples."""
    starts = list(range(0, max(1, wave.numel() - length + 1), hop)) or [0]
    if wave.numel() > length and starts[-1] + length < wave.numel():
        starts.append(starts[-1] + hop)  # the tail, zero-padded
    padded = torch.nn.functional.pad(wave, (0, max(0, starts[-1] + length - wave.numel())))
    return torch.stack([padded[s:s + length] for s in starts]), starts


@torch.no_grad()
def encode_wave(model: MARL, wave: torch.Tensor, hop_seconds: float | None = None):
    """(starts in seconds, private means (n, D), shared means (n, D)) of a mono wave at the
    model's sample rate."""
    from marl.features import log_mel, n_samples_for

    cfg = model.cfg
    length = n_samples_for(cfg)
    hop = length if hop_seconds is None else max(1, round(hop_seconds * cfg.sample_rate))
    clips, starts = frame(wave, length, hop)
    device = next(model.parameters()).device
    x = ((log_mel(clips, cfg) - model.input_mean.cpu()) / model.input_std.cpu()).to(device)
    post = model.encode(x)
    return [s / cfg.sample_rate for s in starts], post.mu_p.cpu(), post.mu_s.cpu()


def encode_files(model: MARL, files: list[Path], hop_seconds: float | None = None, progress: bool = True):
    import pandas as pd
    from tqdm import tqdm

    from marl.notes import read_audio

    frames = []
    for file in tqdm(files, desc="encode", unit="file", disable=not progress, file=sys.stderr):
        offsets, private, shared = encode_wave(model, read_audio(file, model.cfg.sample_rate), hop_seconds)
        row = {"file": str(file), "offset": offsets}
        row.update({f"private_{i}": private[:, i].numpy() for i in range(private.shape[1])})
        row.update({f"shared_{i}": shared[:, i].numpy() for i in range(shared.shape[1])})
        frames.append(pd.DataFrame(row))
    return pd.concat(frames, ignore_index=True)


def main(argv=None) -> None:
    from marl.cli import ArgumentParser
    from marl.files import check_writable, replace_atomically

    p = ArgumentParser(prog="python -m marl.encode", description=__doc__.splitlines()[0].strip("`"))
    p.add_argument("model", help="a model.pt written by marl.train or a sweep trial")
    p.add_argument("audio", nargs="+", help="audio files (any format soundfile reads)")
    p.add_argument("--out", required=True, help="Parquet file to write, one row per clip")
    p.add_argument("--hop", type=float, default=None, metavar="SECONDS",
                   help="seconds between clip starts (default: the clip length, no overlap)")
    args = p.parse_args(argv)
    if args.hop is not None and not args.hop > 0:
        raise UserError("--hop: must be > 0 seconds")
    from marl.notes import check_audio

    files = [Path(a) for a in args.audio]
    check_audio(files)
    out = Path(args.out)
    check_writable(out.parent, "out")
    model = load_model(args.model)
    table = encode_files(model, files, args.hop)
    replace_atomically(out, lambda tmp: table.to_parquet(tmp, index=False))
    print(f"{len(table)} clips from {len(files)} file(s), {model.cfg.latent_dim}-dim private and shared "
          f"codes: {out}")


if __name__ == "__main__":
    exit_on_user_error(main)
