"""Train one MARL model: `python -m marl.train [--flags] --out DIR`.

Writes DIR/config.json, DIR/metrics.json, DIR/model.pt, DIR/latents.parquet (held-out latents
with their factors) and DIR/figures/{mi_heatmap,umap}.{png,pdf}.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from marl import names
from marl.cli import ArgumentParser
from marl.config import Config
from marl.data import Dataset, load_dataset
from marl.errors import UserError, exit_on_user_error
from marl.files import check_writable, write_json
from marl.losses import LossTerms, marl_objective
from marl.model import MARL


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def objective(model: MARL, x1, x2, noise, weights, dataset_size: int, estimator: str,
              amp: bool = False) -> LossTerms:
    """One training step's loss: a pure function of (parameters, batch, noise, weights).

    No host synchronisation happens here, so `torch.func.functional_call` + `vmap` can run it
    over a stack of configurations' parameters and weights. With amp, only the network's
    layers run under bf16 autocast; the estimators' log-densities and logsumexps (values of
    magnitude ~1e3) stay in fp32.
    """
    with torch.autocast(device_type=x1.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x1, x2, noise)
    return marl_objective(out, x1, x2, weights, dataset_size, estimator)


class Trainer:
    """Model, optimiser, data and RNG of one run; one call of `run_epoch` is one epoch."""

    def __init__(self, cfg: Config, data: Dataset, device: torch.device):
        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)  # parameter init
        self.model = MARL(cfg).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.data = data
        self.train_x = data.train.x.to(device)  # resident on the device: batches are slices
        self.weights = torch.tensor([cfg.alpha, cfg.beta, cfg.gamma], device=device)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.epoch = 0

    def run_epoch(self) -> dict[str, float]:
        """Train one epoch; returns the epoch's mean loss terms (`loss/<term>`)."""
        cfg, n = self.cfg, self.train_x.shape[0]
        perm = torch.randperm(n, generator=self.gen, device=self.device)
        sums = torch.zeros(len(names.LOSS_TERMS), device=self.device)
        n_batches = n // cfg.batch_size  # drop the ragged last batch: the estimators need B fixed
        for b in range(n_batches):
            batch = self.train_x[perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
            noise = torch.randn(3, cfg.batch_size, cfg.latent_dim, generator=self.gen,
                                device=self.device)
            terms = objective(self.model, batch[:, 0], batch[:, 1], noise, self.weights,
                              n, cfg.estimator, cfg.amp)
            self.opt.zero_grad(set_to_none=True)
            terms.total.backward()
            self.opt.step()
            sums += torch.stack([t.detach() for t in terms])
        self.epoch += 1
        means = (sums / n_batches).tolist()  # the epoch's one host synchronisation
        return {names.loss(t): v for t, v in zip(names.LOSS_TERMS, means)}

    def evaluate(self, with_umap: bool = False):
        from marl.evaluate import evaluate

        return evaluate(self.model, self.data, self.cfg, self.device, with_umap)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "gen": self.gen.get_state(), "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.epoch = state["epoch"]


def is_finite(losses: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in losses.values())


def train(cfg: Config, data: Dataset | None = None, progress: bool = True):
    """Train for cfg.epochs and evaluate; returns (trainer, metrics, latents DataFrame)."""
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = data or load_dataset(cfg)
    trainer = Trainer(cfg, data, device)
    bar = tqdm(range(cfg.epochs), desc="train", unit="epoch", disable=not progress, file=sys.stderr)
    losses: dict[str, float] = {}
    for _ in bar:
        losses = trainer.run_epoch()
        bar.set_postfix(loss=f"{losses[names.loss('total')]:.1f}")
        if not is_finite(losses):
            raise UserError(f"training diverged at epoch {trainer.epoch} (non-finite loss); "
                            "lower lr or the loss weights")
    metrics, latents = trainer.evaluate(with_umap=cfg.umap)
    return trainer, {**losses, **metrics}, latents


# ---------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> tuple[Config, Path]:
    parser = ArgumentParser(prog="python -m marl.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", metavar="FILE", help="JSON or YAML file of config fields")
    parser.add_argument("--out", metavar="DIR", default="runs/latest", help="output folder (default: %(default)s)")
    for f in fields(Config):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, metavar=f.type.upper(),
                            help=f"default: {f.default}")
    args = vars(parser.parse_args(argv))
    values = Config.from_file(args.pop("config")) if args.get("config") else {}
    out = Path(args.pop("out"))
    values.update({k: v for k, v in args.items() if v is not None})
    cfg = Config.from_dict(values)
    check_writable(out, "out")
    return cfg, out


def write_outputs(out: Path, cfg: Config, trainer: Trainer, metrics: dict, latents) -> None:
    from marl import plots

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_dict())
    write_json(out / "metrics.json", metrics)
    torch.save({"config": cfg.to_dict(), "model": trainer.model.state_dict()}, out / "model.pt")
    latents.to_parquet(out / "latents.parquet", index=False)
    mi = {(t, s): metrics[names.mi(t, s)] for t in names.TASKS for s in names.SUBSPACES}
    plots.mi_heatmap(mi, out / "figures" / "mi_heatmap")
    if cfg.umap:
        emb = {s: latents[[f"umap_{s}_x", f"umap_{s}_y"]].to_numpy() for s in ("private", "both", "shared")}
        plots.umap_scatter(emb, latents["timbre"].to_numpy(), out / "figures" / "umap")


def main(argv: list[str] | None = None) -> None:
    start = time.perf_counter()
    cfg, out = parse_args(argv)
    trainer, metrics, latents = train(cfg)
    metrics["time/seconds"] = time.perf_counter() - start
    write_outputs(out, cfg, trainer, metrics, latents)
    print("probe accuracy on test clips   linear: timbre  pitch    mlp: timbre  pitch")
    for latent in names.LATENTS:
        row = "   ".join(f"{metrics[names.probe(latent, 'timbre', 'test', k)]:.3f}   "
                         f"{metrics[names.probe(latent, 'pitch', 'test', k)]:.3f}" for k in names.PROBE_KINDS)
        print(f"  {latent:<34} {row}")
    print(f"separation (chance-corrected, test, mlp) {metrics[names.SEPARATION]:.3f}   "
          f"({metrics['time/seconds']:.0f} s on {trainer.device})")
    print(f"results in {out}/")


if __name__ == "__main__":
    exit_on_user_error(main)
