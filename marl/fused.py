"""Train K configurations that share an architecture as one batched model.

The K models' parameters are stacked (`torch.func.stack_module_state`) and one training step
runs `marl.train.objective` for all of them at once with `vmap` over `functional_call` — the
mechanism of PyTorch's model-ensembling tutorial and of HFTA (MLSys 2021). Each member keeps
its own seed, hence its own initialisation, batch order and noise, so member k follows exactly
the run `Trainer(cfgs[k])` would make (up to float rounding of batched matmuls).
"""

from __future__ import annotations

import copy

import torch
from torch.func import functional_call, stack_module_state, vmap

from marl import names
from marl.config import Config
from marl.data import Dataset
from marl.model import MARL
from marl.train import objective

# Fields that may differ between the members of one fused group; all others must match.
MEMBER_FIELDS = ("alpha", "beta", "gamma", "seed")


def fuse_key(cfg: Config) -> tuple:
    """Configurations with equal keys can train as one fused model."""
    return tuple(sorted((k, v) for k, v in cfg.to_dict().items() if k not in MEMBER_FIELDS))


# On a CPU the members' B×B×D log-density tensors outgrow the caches when all K are batched
# at once; vmapping 4 members at a time measured 1.7x faster than all 16 (docs/performance.md).
CPU_CHUNK = 4


class FusedTrainer:
    def __init__(self, cfgs: list[Config], data: Dataset, device: torch.device,
                 chunk_size: int | None | str = "auto"):
        if len({fuse_key(c) for c in cfgs}) != 1:
            raise ValueError("fused configurations may differ only in " + ", ".join(MEMBER_FIELDS))
        self.cfgs, self.cfg, self.device, self.data = cfgs, cfgs[0], device, data
        models = []
        for cfg in cfgs:
            torch.manual_seed(cfg.seed)  # the same initialisation as Trainer(cfg)
            models.append(MARL(cfg).to(device))
        self.params, self.buffers = stack_module_state(models)
        self.skeleton = copy.deepcopy(models[0]).to("meta")
        self.opt = torch.optim.Adam(list(self.params.values()), lr=self.cfg.lr)
        self.weights = torch.tensor([[c.alpha, c.beta, c.gamma] for c in cfgs], device=device)
        self.gens = [torch.Generator(device=device).manual_seed(c.seed) for c in cfgs]
        self.train_x = data.train.x.to(device)
        self.epoch = 0
        n, estimator, amp = self.train_x.shape[0], self.cfg.estimator, self.cfg.amp

        def member_terms(params, buffers, x1, x2, noise, weights):
            model = lambda *a: functional_call(self.skeleton, (params, buffers), a)  # noqa: E731
            return torch.stack(tuple(objective(model, x1, x2, noise, weights, n, estimator, amp)))

        if chunk_size == "auto":
            chunk_size = CPU_CHUNK if device.type == "cpu" else None
        self.terms = vmap(member_terms, chunk_size=chunk_size)  # -> (K, len(LOSS_TERMS))

    def batch_terms(self, batch: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """batch (K, B, 2, M, T), noise (K, 3, B, D) -> loss terms (K, 5)."""
        return self.terms(self.params, self.buffers, batch[:, :, 0], batch[:, :, 1], noise, self.weights)

    def run_epoch(self) -> list[dict[str, float]]:
        cfg, n, k = self.cfg, self.train_x.shape[0], len(self.cfgs)
        perms = torch.stack([torch.randperm(n, generator=g, device=self.device) for g in self.gens])
        sums = torch.zeros(k, len(names.LOSS_TERMS), device=self.device)
        n_batches = n // cfg.batch_size
        for b in range(n_batches):
            batch = self.train_x[perms[:, b * cfg.batch_size:(b + 1) * cfg.batch_size]]
            noise = torch.stack([torch.randn(3, cfg.batch_size, cfg.latent_dim, generator=g,
                                             device=self.device) for g in self.gens])
            terms = self.batch_terms(batch, noise)
            self.opt.zero_grad(set_to_none=True)
            terms[:, 0].sum().backward()  # members' losses are independent: one backward
            self.opt.step()
            sums += terms.detach()
        self.epoch += 1
        means = (sums / n_batches).tolist()
        return [{names.loss(t): v for t, v in zip(names.LOSS_TERMS, row)} for row in means]

    def member(self, k: int) -> MARL:
        """Member k as an ordinary MARL module (for evaluation and saving)."""
        model = MARL(self.cfgs[k]).to(self.device)
        model.load_state_dict({name: p[k].detach() for name, p in {**self.params, **self.buffers}.items()})
        return model

    def state_dict(self) -> dict:
        return {"params": {k: v.detach().clone() for k, v in self.params.items()},
                "opt": self.opt.state_dict(), "gens": [g.get_state() for g in self.gens],
                "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for name, value in state["params"].items():
                self.params[name].copy_(value)
        self.opt.load_state_dict(state["opt"])
        for g, s in zip(self.gens, state["gens"]):
            g.set_state(s)
        self.epoch = state["epoch"]
