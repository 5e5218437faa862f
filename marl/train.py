"""Train one MARL model: `python -m marl.train [--flags] --out DIR`.

Writes DIR/config.json, DIR/metrics.json, DIR/model.pt, DIR/latents.parquet (held-out latents
with their factors), DIR/epochs.parquet (each epoch's losses, and each evaluation's figures on
its epoch's row: `--eval-every N`) and DIR/figures/.
"""

from __future__ import annotations

import sys
import time
from dataclasses import fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from marl import names
from marl.cli import ArgumentParser, field_comments
from marl.config import Config
from marl.data import Dataset, load_dataset
from marl.errors import UserError, exit_on_user_error
from marl.files import check_writable, replace_atomically, write_json
from marl.fit import Epoch, fit
from marl.member import model_file, write_member
from marl.provenance import provenance
from marl.trainer import Trainer, pick_device


def train(cfg: Config, data: Dataset | None = None, progress: bool = True):
    """Train for cfg.epochs and evaluate (also every cfg.eval_every epochs): `marl.fit` with a
    progress bar. Returns (trainer, metrics, latents DataFrame, the epochs' mean loss terms as
    a list of {"epoch", "loss/<term>"}, with each evaluation's scalars on the rows of the epochs
    it ran after)."""
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = data or load_dataset(cfg)
    trainer = Trainer(cfg, data, device)
    bar = tqdm(total=cfg.epochs, desc="train", unit="epoch", disable=not progress, file=sys.stderr)
    history: list[dict] = []
    last: dict = {}

    def on_epoch(result: Epoch) -> None:
        losses = result.losses[0]
        if result.diverged:
            raise UserError(f"training diverged at epoch {result.epoch} (non-finite loss); "
                            "lower lr or the loss weights")
        history.append({"epoch": result.epoch, **losses})
        if result.evaluated:
            metrics, latents = result.evaluated[0]
            history[-1].update(evaluation_scalars(metrics))
            last.update(metrics={**losses, **metrics}, latents=latents)
        bar.update(1)
        bar.set_postfix(loss=f"{losses[names.loss('total')]:.1f}")

    fit(trainer, on_epoch)
    bar.close()
    return trainer, last["metrics"], last["latents"], history


def evaluation_scalars(metrics: dict) -> dict:
    return {key: metrics[key] for key in names.eval_scalars() if key in metrics}


# ---------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> tuple[Config, Path, bool]:
    parser = ArgumentParser(prog="python -m marl.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", metavar="FILE", help="JSON or YAML file of config fields")
    parser.add_argument("--out", metavar="DIR", default="runs/latest", help="output folder (default: %(default)s)")
    parser.add_argument("--listen", action="store_true",
                        help="also render the reconstructions and timbre swaps to WAV (Griffin-Lim) in OUT/audio")
    comments = field_comments(Config)
    for f in fields(Config):
        about = comments.get(f.name, "").replace("%", "%%")
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, metavar=f.type.upper(),
                            help=f"{about} (default: {f.default})" if about else f"default: {f.default}")
    args = vars(parser.parse_args(argv))
    values = Config.from_file(args.pop("config")) if args.get("config") else {}
    out, listen = Path(args.pop("out")), args.pop("listen")
    values.update({k: v for k, v in args.items() if v is not None})
    cfg = Config.from_dict(values).with_absolute_paths()
    check_writable(out, "out")
    return cfg, out, listen


def write_outputs(out: Path, cfg: Config, trainer: Trainer, metrics: dict, latents, history: list,
                  listen: bool = False) -> None:
    import pandas as pd

    from marl import plots

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_dict())
    model = trainer.member(0)
    write_member(out, {**metrics, **provenance()}, latents, model_file(cfg, model, trainer.data))
    epochs = pd.DataFrame(history)
    replace_atomically(out / "epochs.parquet", lambda tmp: epochs.to_parquet(tmp, index=False))
    figures = out / "figures"
    mi = {(t, s): metrics[names.mi(t, s)] for t in names.TASKS for s in names.SUBSPACES}
    plots.mi_heatmap(mi, figures / "mi_heatmap")
    plots.loss_curves(epochs, figures / "loss_curves")
    if cfg.umap:
        emb = {s: latents[[f"umap_{s}_x", f"umap_{s}_y"]].to_numpy() for s in ("private", "both", "shared")}
        plots.umap_scatter(emb, latents["timbre"].to_numpy(), figures / "umap", names=plots.timbre_names(latents))
    write_listening(out, cfg, model, trainer.data, listen)


def write_listening(out: Path, cfg: Config, model, data: Dataset, listen: bool, n: int = 4) -> None:
    """figures/reconstructions (test clips beside their reconstructions) and figures/swap (A's
    private code with B's shared code); with `listen`, the same as WAV files in audio/."""
    from marl import decode, plots

    model = model.cpu().eval()
    x = data.test.x[:n, 0]
    recon = decode.reconstruct(model, x)
    plots.spectrogram_grid({"input": x.numpy(), "reconstruction": recon.numpy()}, out / "figures" / "reconstructions",
                           "test clips and their reconstructions (normalised log-mel)")
    a, b = decode.swap_clips(data.test, n)
    swapped = decode.swap(model, a, b)
    plots.spectrogram_grid({"A": a.numpy(), "B": b.numpy(), "A private + B shared": swapped.numpy()},
                           out / "figures" / "swap", "timbre swap: A's pitch in B's timbre")
    if not listen:
        return
    import soundfile

    folder = out / "audio"
    folder.mkdir(parents=True, exist_ok=True)
    for name, clips in {"input": x, "reconstruction": recon, "swap_A": a, "swap_B": b, "swap_A_private_B_shared": swapped}.items():
        for i, wave in enumerate(decode.to_audio(clips, data.mean, data.std, cfg)):
            soundfile.write(str(folder / f"{name}_{i}.wav"), wave.numpy(), cfg.sample_rate)


def main(argv: list[str] | None = None) -> None:
    start = time.perf_counter()
    cfg, out, listen = parse_args(argv)
    trainer, metrics, latents, history = train(cfg)
    metrics["time/seconds"] = time.perf_counter() - start
    write_outputs(out, cfg, trainer, metrics, latents, history, listen)
    if trainer.data.skipped:
        print(f"{cfg.source}: {len(trainer.data.skipped)} note(s) skipped: " + "; ".join(trainer.data.skipped))
    if not trainer.data.tasks["timbre"]:
        print("timbre: not applicable (test instruments are unseen and share no family with training)")
    elif trainer.data.tasks["timbre"] == "family":
        print("timbre: scored as instrument family (test instruments are unseen)")
    print("probe accuracy on test clips   linear: timbre  pitch    mlp: timbre  pitch")
    for latent in names.LATENTS:
        row = "   ".join(f"{metrics[names.probe(latent, 'timbre', 'test', k)]:.3f}   "
                         f"{metrics[names.probe(latent, 'pitch', 'test', k)]:.3f}" for k in names.PROBE_KINDS)
        print(f"  {latent:<34} {row}")
    if trainer.data.midi:
        print("chroma accuracy of the pitch probes (test)   " + "   ".join(
            f"{kind}: " + " ".join(f"{latent} {metrics[names.chroma(latent, kind)]:.3f}" for latent in names.LATENTS)
            for kind in names.PROBE_KINDS))
    print(f"dim-KL (nats) over all {cfg.n_train_pairs} training posteriors, and {cfg.estimator}'s error: "
          + ", ".join(f"{s} {metrics[names.kl_exact(s, 'dim_kl')]:.2f} ({metrics[names.kl_bias(s, 'dim_kl')]:+.2f})"
                      for s in names.KL_SUBSPACES))
    print(f"separation (chance-corrected, test, mlp) {metrics[names.SEPARATION]:.3f}   "
          f"({metrics['time/seconds']:.0f} s on {trainer.device})")
    print(f"results in {out}/")


if __name__ == "__main__":
    exit_on_user_error(main)
