"""The MARL trainer: K >= 1 configurations that share an architecture, trained as one stacked
model (one configuration is the case K = 1). `marl.fit` runs its epochs."""

from __future__ import annotations

import copy
import math

import torch
from torch.func import functional_call, stack_module_state, vmap

from marl import names
from marl.config import Config
from marl.data import Dataset
from marl.errors import UserError
from marl.losses import Bank, LossTerms, marl_objective
from marl.model import MARL, PairOutput
from marl.trial import MEMBER_FIELDS


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def learning_rate(cfg: Config, step: int, total_steps: int) -> float:
    """The learning rate of training step `step` (0-based) of `total_steps` under cfg.schedule."""
    if cfg.schedule == "constant":
        return cfg.lr
    warm = round(cfg.warmup * total_steps)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))


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





def pack_key(cfg: Config) -> tuple:
    """Configurations with equal keys can train packed in one Trainer."""
    return tuple(sorted((k, v) for k, v in cfg.to_dict().items() if k not in MEMBER_FIELDS))


class Trainer:
    """K ≥ 1 configurations that share an architecture, trained as one stacked model.

    The K models' parameters are stacked (`torch.func.stack_module_state`) and one step runs
    `objective` for all of them with `vmap` over `functional_call` (PyTorch's model-ensembling
    mechanism; HFTA, MLSys 2021) on a GPU, where batching the members is what pays. On a CPU
    (`vectorise` False, its default there) the members run one after another with the plain
    model's kernels, since batching them does not pay there (docs/performance.md). Each member
    keeps its own seed, hence its own initialisation, batch order and noise: member k follows
    the run a Trainer of cfgs[k] alone makes, exactly on a CPU, up to float rounding of batched
    matmuls with vmap. `run_epoch` returns one dict of mean loss terms per member.
    """

    def __init__(self, cfgs: Config | list[Config], data: Dataset, device: torch.device,
                 vectorise: bool | None = None, chunk_size: int | None = None):
        cfgs = [cfgs] if isinstance(cfgs, Config) else list(cfgs)
        if len({pack_key(c) for c in cfgs}) != 1:
            raise ValueError("packed configurations may differ only in " + ", ".join(MEMBER_FIELDS))
        self.cfgs, self.cfg, self.device, self.data = cfgs, cfgs[0], device, data
        vectorise = device.type != "cpu" if vectorise is None else vectorise
        models = []
        for cfg in cfgs:
            torch.manual_seed(cfg.seed)  # parameter init: member k as if trained alone
            models.append(MARL(cfg).to(device))
        self.params, self.buffers = stack_module_state(models)
        self.skeleton = copy.deepcopy(models[0]).to("meta")
        # Adam's `fused` flag: one kernel for all parameters' updates, on CUDA (measured on CPU: no gain)
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

        if len(cfgs) == 1 or not vectorise:
            # the plain model's kernels, one member after another: each member's arithmetic is
            # exactly that of its own run, so its figures are bit-identical to it
            def in_turn(p, b, *a):
                outs = [member_terms({n: v[i] for n, v in p.items()}, {n: v[i] for n, v in b.items()},
                                     *(t[i] for t in a)) for i in range(len(cfgs))]
                return tuple(torch.stack(parts) for parts in zip(*outs))
            self.terms = in_turn
        else:
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
            if cfg.schedule != "constant":
                for group in self.opt.param_groups:
                    group["lr"] = learning_rate(cfg, self.epoch * n_batches + b, cfg.epochs * n_batches)
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

    def evaluate(self, with_umap: bool = False) -> list[tuple]:
        """Each member's (metrics, test latents DataFrame), all probes trained in one batch."""
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
