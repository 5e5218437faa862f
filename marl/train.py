"""Train one MARL model: `python -m marl.train [--flags] --out DIR`.

Writes DIR/config.json, DIR/metrics.json, DIR/model.pt, DIR/latents.parquet (held-out latents
with their factors) and DIR/figures/{mi_heatmap,umap}.{png,pdf}.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from marl import names
from marl.cli import ArgumentParser
from marl.config import Config
from marl.data import Dataset, load_dataset
from marl.errors import UserError, exit_on_user_error
from marl.files import check_writable, write_json
from marl.losses import Bank, LossTerms, marl_objective
from marl.model import MARL, PairOutput
from marl.provenance import provenance


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def objective(model: MARL, x1, x2, noise, weights, dataset_size: int, estimator: str,
              amp: bool = False, swap: bool = False, temperature: float = 0.1,
              likelihood: str = "sum", banks=None) -> tuple[LossTerms, PairOutput]:
    """One training step's loss terms and the model's output: a pure function of (parameters,
    batch, noise, weights, bank entries).

    No host synchronisation happens here, so `torch.func.functional_call` + `vmap` can run it
    over a stack of configurations' parameters and weights. With amp, only the network's
    layers run under bf16 autocast; the estimators' log-densities and logsumexps (values of
    magnitude ~1e3) stay in fp32.
    """
    with torch.autocast(device_type=x1.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x1, x2, noise, swap)
    terms = marl_objective(out, x1, x2, weights, dataset_size, estimator, temperature, likelihood, banks)
    return terms, out


# Fields that may differ between the members of one packed trainer; all others must match.
MEMBER_FIELDS = (*names.WEIGHTS, "seed")

# On a CPU the members' B×B×D log-density tensors outgrow the caches when all K are batched
# at once; vmapping 4 members at a time measured 1.7x faster than all 16 (docs/performance.md).
CPU_CHUNK = 4


def pack_key(cfg: Config) -> tuple:
    """Configurations with equal keys can train packed in one Trainer."""
    return tuple(sorted((k, v) for k, v in cfg.to_dict().items() if k not in MEMBER_FIELDS))


class Trainer:
    """K ≥ 1 configurations that share an architecture, trained as one stacked model.

    The K models' parameters are stacked (`torch.func.stack_module_state`) and one step runs
    `objective` for all of them with `vmap` over `functional_call` (PyTorch's model-ensembling
    mechanism; HFTA, MLSys 2021). Each member keeps its own seed, hence its own initialisation,
    batch order and noise: member k follows exactly the run a Trainer of cfgs[k] alone makes (up
    to float rounding of batched matmuls). One configuration is the case K = 1, run without vmap.
    `run_epoch` returns one dict of mean loss terms per member.
    """

    def __init__(self, cfgs: Config | list[Config], data: Dataset, device: torch.device,
                 chunk_size: int | None | str = "auto"):
        cfgs = [cfgs] if isinstance(cfgs, Config) else list(cfgs)
        if len({pack_key(c) for c in cfgs}) != 1:
            raise ValueError("packed configurations may differ only in " + ", ".join(MEMBER_FIELDS))
        self.cfgs, self.cfg, self.device, self.data = cfgs, cfgs[0], device, data
        models = []
        for cfg in cfgs:
            torch.manual_seed(cfg.seed)  # parameter init: member k as if trained alone
            models.append(MARL(cfg).to(device))
        self.params, self.buffers = stack_module_state(models)
        self.skeleton = copy.deepcopy(models[0]).to("meta")
        # fused=True: one kernel for all parameters' updates, on CUDA (measured on CPU: no gain)
        self.opt = torch.optim.Adam(list(self.params.values()), lr=self.cfg.lr,
                                    fused=True if device.type == "cuda" else None)
        self.weights = torch.tensor([[getattr(c, w) for w in names.WEIGHTS] for c in cfgs], device=device)
        # the swap decodes cost a decoder pass: only when some member weighs them
        self.swap = any(c.swap > 0 for c in cfgs)
        self.gens = [torch.Generator(device=device).manual_seed(c.seed) for c in cfgs]
        self.train_x = data.train.x.to(device)  # resident on the device: batches are slices
        self.epoch = 0
        n, estimator, amp, swap, tau, likelihood = (self.train_x.shape[0], self.cfg.estimator, self.cfg.amp,
                                                    self.swap, self.cfg.temperature, self.cfg.likelihood)
        # estimator "bank": every training pair's detached posteriors, mu and logvar of shape
        # (members, N, 3, D) (view 0 private, view 1 private, fused), each pair's refreshed when
        # it passes: an entry is at most an epoch old
        self.bank = None
        if estimator == "bank":
            x = self.train_x
            posts = [m.subspace_posteriors(x[:, 0], x[:, 1]) for m in models]
            self.bank = tuple(torch.stack([p[i] for p in posts]).transpose(1, 2).contiguous() for i in (0, 1))

        def member_terms(params, buffers, x1, x2, noise, weights, *bank):
            model = lambda *a: functional_call(self.skeleton, (params, buffers), a)  # noqa: E731
            banks = tuple(Bank(mu, lv, bank[2]) for mu, lv in zip(*bank[:2])) if bank else None  # (3, K, D) each
            terms, out = objective(model, x1, x2, noise, weights, n, estimator, amp, swap, tau, likelihood, banks)
            posterior = (torch.stack([out.views[0].mu_p, out.views[1].mu_p, out.mu_s]),
                         torch.stack([out.views[0].logvar_p, out.views[1].logvar_p, out.logvar_s]))
            return torch.stack(tuple(terms)), *posterior

        if len(cfgs) == 1:  # no vmap: the plain model's kernels
            self.terms = lambda p, b, *a: tuple(t[None] for t in member_terms(  # noqa: E731
                {k: v[0] for k, v in p.items()}, {k: v[0] for k, v in b.items()},
                *(t[0] for t in a)))
        else:
            if chunk_size == "auto":
                chunk_size = CPU_CHUNK if device.type == "cpu" else None
            self.terms = vmap(member_terms, chunk_size=chunk_size)  # -> (K, ...) each
        if self.cfg.compile:  # "reduce-overhead": CUDA graphs, one launch per step instead of hundreds
            self.terms = torch.compile(self.terms, mode="reduce-overhead" if device.type == "cuda" else "default")

    def __len__(self) -> int:
        return len(self.cfgs)

    def batch_terms(self, batch: torch.Tensor, noise: torch.Tensor, *bank: torch.Tensor):
        """For K members: batch (K, B, 2, M, T), noise (K, 3, B, D), for estimator "bank" the
        drawn entries' mu and logvar (K, 3, bank_size, D) and own-example mask (K, B, bank_size)
        -> loss terms (K, len(LOSS_TERMS)) and the batch's posterior mu and logvar (K, 3, B, D)."""
        return self.terms(self.params, self.buffers, batch[:, :, 0], batch[:, :, 1], noise, self.weights, *bank)

    def draw_bank(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """bank_size entries of each member's bank, drawn uniformly with its own generator, and
        where each is the own example of the batch's pair (index (K, B))."""
        if self.bank is None:
            return ()
        k, n = len(self.cfgs), self.train_x.shape[0]
        picks = torch.stack([torch.randint(n, (self.cfg.bank_size,), generator=g, device=self.device)
                             for g in self.gens])
        rows = torch.arange(k, device=self.device)[:, None]
        return (*(t[rows, picks].transpose(1, 2) for t in self.bank), index[:, :, None] == picks[:, None])

    def refresh_bank(self, index: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        """Write the batch's detached posteriors (K, 3, B, D) at its pairs' index (K, B)."""
        if self.bank is None:
            return
        rows = torch.arange(len(self.cfgs), device=self.device)[:, None]
        for t, new in zip(self.bank, (mu, logvar)):
            t[rows, index] = new.detach().transpose(1, 2)

    def run_epoch(self) -> list[dict[str, float]]:
        """Train one epoch; returns each member's mean loss terms (`loss/<term>`)."""
        cfg, n, k = self.cfg, self.train_x.shape[0], len(self.cfgs)
        perms = torch.stack([torch.randperm(n, generator=g, device=self.device) for g in self.gens])
        sums = torch.zeros(k, len(names.LOSS_TERMS), device=self.device)
        n_batches = n // cfg.batch_size  # drop the ragged last batch: the estimators need B fixed
        for b in range(n_batches):
            index = perms[:, b * cfg.batch_size:(b + 1) * cfg.batch_size]
            batch = self.train_x[index]
            noise = torch.stack([torch.randn(3, cfg.batch_size, cfg.latent_dim, generator=g,
                                             device=self.device) for g in self.gens])
            terms, mu, logvar = self.batch_terms(batch, noise, *self.draw_bank(index))
            self.opt.zero_grad(set_to_none=True)
            terms[:, 0].sum().backward()  # members' losses are independent: one backward
            self.opt.step()
            self.refresh_bank(index, mu, logvar)
            sums += terms.detach()
        self.epoch += 1
        means = (sums / n_batches).tolist()  # the epoch's one host synchronisation
        reported = [t for t in names.LOSS_TERMS if t != "swap" or self.swap]  # swap only when computed
        return [{names.loss(t): v for t, v in zip(names.LOSS_TERMS, row) if t in reported} for row in means]

    def member(self, k: int = 0) -> MARL:
        """Member k as an ordinary MARL module (for evaluation and saving)."""
        model = MARL(self.cfgs[k]).to(self.device)
        model.load_state_dict({name: p[k].detach() for name, p in {**self.params, **self.buffers}.items()})
        return model

    def members(self) -> list[MARL]:
        return [self.member(k) for k in range(len(self.cfgs))]

    def evaluate(self, with_umap: bool = False) -> list[tuple[dict, "pd.DataFrame"]]:
        """Each member's (metrics, test latents), all probes trained in one batch."""
        from marl.evaluate import evaluate_members

        return evaluate_members(self.members(), self.cfgs, self.data, self.device, with_umap)

    def state_dict(self) -> dict:
        return {"params": {k: v.detach().clone() for k, v in self.params.items()},
                "opt": self.opt.state_dict(), "gens": [g.get_state() for g in self.gens],
                "epoch": self.epoch, "bank": None if self.bank is None else tuple(t.clone() for t in self.bank)}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for name, value in state["params"].items():
                self.params[name].copy_(value)
        self.opt.load_state_dict(state["opt"])
        for g, s in zip(self.gens, state["gens"]):
            g.set_state(s.cpu() if hasattr(s, "cpu") else s)
        self.epoch = state["epoch"]
        if self.bank is not None and state.get("bank") is not None:
            for t, saved in zip(self.bank, state["bank"]):
                t.copy_(saved)


def model_file(cfg: Config, model: MARL, data: Dataset) -> dict:
    """What `model.pt` holds: enough to use the model without the data cache."""
    return {"config": cfg.to_dict(), "model": model.state_dict(),
            "normalisation": {"mean": data.mean.cpu(), "std": data.std.cpu()}}


def is_finite(losses: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in losses.values())


def train(cfg: Config, data: Dataset | None = None, progress: bool = True):
    """Train for cfg.epochs and evaluate (also every cfg.eval_every epochs); returns (trainer,
    metrics, latents DataFrame, the epochs' mean loss terms as a list of {"epoch", "loss/<term>"},
    with each evaluation's scalars on the rows of the epochs it ran after)."""
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = data or load_dataset(cfg)
    trainer = Trainer(cfg, data, device)
    bar = tqdm(range(cfg.epochs), desc="train", unit="epoch", disable=not progress, file=sys.stderr)
    losses: dict[str, float] = {}
    history = []
    for _ in bar:
        losses = trainer.run_epoch()[0]
        history.append({"epoch": trainer.epoch, **losses})
        bar.set_postfix(loss=f"{losses[names.loss('total')]:.1f}")
        if not is_finite(losses):
            raise UserError(f"training diverged at epoch {trainer.epoch} (non-finite loss); "
                            "lower lr or the loss weights")
        if cfg.eval_every and trainer.epoch % cfg.eval_every == 0 and trainer.epoch < cfg.epochs:
            history[-1].update(evaluation_scalars(trainer.evaluate()[0][0]))
    metrics, latents = trainer.evaluate(with_umap=cfg.umap)[0]
    history[-1].update(evaluation_scalars(metrics))
    return trainer, {**losses, **metrics}, latents, history


def evaluation_scalars(metrics: dict) -> dict:
    return {key: metrics[key] for key in names.eval_scalars() if key in metrics}


# ---------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> tuple[Config, Path, bool]:
    parser = ArgumentParser(prog="python -m marl.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", metavar="FILE", help="JSON or YAML file of config fields")
    parser.add_argument("--out", metavar="DIR", default="runs/latest", help="output folder (default: %(default)s)")
    parser.add_argument("--listen", action="store_true",
                        help="also render the reconstructions and timbre swaps to WAV (Griffin-Lim) in OUT/audio")
    for f in fields(Config):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, metavar=f.type.upper(),
                            help=f"default: {f.default}")
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
    write_json(out / "metrics.json", {**metrics, **provenance()})
    model = trainer.member(0)
    torch.save(model_file(cfg, model, trainer.data), out / "model.pt")
    latents.to_parquet(out / "latents.parquet", index=False)
    epochs = pd.DataFrame(history)
    epochs.to_parquet(out / "epochs.parquet", index=False)
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
