"""Probes as batched torch modules: every (member × latent × task) probe of a trial in one call.

A probe problem is (train, val, test) codes with integer labels. P problems with the same number
of rows per split are stacked into (P, N, D) tensors — narrower codes zero-padded to the widest
D, fewer classes masked out of the softmax — and trained together on the trainer's device:

- linear: multinomial logistic regression with sklearn's penalty, ½‖W‖² + C·Σ cross-entropy,
  full-batch L-BFGS with sklearn's stopping rule, for each C in LINEAR_C (each fit starting
  from the previous C's solution); the C with the best validation accuracy wins.
- mlp: one hidden layer of 64 ReLUs, Adam, minibatches, sklearn's L2 of 1e-4, a fixed
  MLP_EPOCHS epochs; the weights of the epoch with the best validation accuracy are kept.

Adam is element-wise and every problem trains the same number of epochs, so stacked problems
train as they would one at a time, whatever else is in the stack; each problem's codes are
standardised with its own training statistics. Each member of a packed trial draws its MLPs'
initialisation and batch order from a generator of its own seed (a "stream"), and on a CPU its
linear probes are stacked with its own problems only (L-BFGS minimises a stack's summed loss,
so its steps couple what is stacked): its probes are those of its own run (tests/test_pack.py). `tests/test_probes.py`
holds these probes to sklearn's LogisticRegression and MLPClassifier within ±0.03.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from marl.names import DATA_SPLITS

LINEAR_C = (0.1, 1.0, 10.0)  # inverse regularisation strengths tried, ascending; chosen on validation
LINEAR_STEPS = 200  # L-BFGS iterations at most per C (sklearn: 100 by default)
# sklearn: lr 1e-3, batch 200, up to 200 epochs. Batch 1024 at lr 8e-3 for 100 epochs reads the
# same as lr 4e-3 for 200 epochs on real codes, within a probe seed's own spread (docs/performance.md)
MLP_HIDDEN, MLP_ALPHA, MLP_LR, MLP_BATCH = 64, 1e-4, 8e-3, 1024
MLP_EPOCHS = 100
KINDS = ("linear", "mlp")
SPLITS = DATA_SPLITS  # a problem's (train, val, test)


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """(P, N, D) codes scaled by each problem's training mean and std (constant columns: 1)."""
    mean = train.mean(1, keepdim=True)
    std = train.std(1, unbiased=False, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return [(x - mean) / std for x in (train, *others)]


def _class_mask(n_classes: torch.Tensor, width: int) -> torch.Tensor | None:
    """(P, width) True where a class exists for that problem; None when all problems have all."""
    if bool((n_classes == width).all()):
        return None
    return torch.arange(width, device=n_classes.device)[None] < n_classes[:, None]


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).float().mean(-1)


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per problem: logits (P, N, C), labels (P, N) -> (P,)."""
    # one log-softmax kernel and its one backward (a hand-written logsumexp took 3×)
    ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return ce.view(y.shape).mean(-1)


def _absent_offset(n_classes: torch.Tensor, width: int) -> torch.Tensor:
    """(P, width): 0 on each problem's classes, -inf on the padding ones, added to the output
    bias so that a padded class is never predicted and takes no gradient."""
    offset = torch.zeros(len(n_classes), width, device=n_classes.device)
    mask = _class_mask(n_classes, width)
    return offset if mask is None else offset.masked_fill(~mask, float("-inf"))


def _linear_logits(w, b, x, offset):
    return torch.baddbmm((b + offset)[:, None], x, w)


@torch.no_grad()
def linear_loss_and_grad(w, b, x, y, offset, c: float):
    """sklearn's ½‖W‖² + C·Σ cross-entropy divided by C·n (the same minimiser, a well-scaled
    loss), summed over the P problems, and its gradients in W and b. They are written out
    (softmax − one-hot): autograd's bookkeeping was a third of L-BFGS's time."""
    n = x.shape[1]
    log_p = torch.log_softmax(_linear_logits(w, b, x, offset), -1)
    loss = (-log_p.gather(-1, y[..., None]).mean((1, 2)) + 0.5 / (c * n) * w.pow(2).sum((1, 2))).sum()
    grad = log_p.exp_().scatter_add_(-1, y[..., None], log_p.new_full((*y.shape, 1), -1.0)).div_(n)
    return loss, torch.baddbmm(w, x.transpose(1, 2), grad, beta=1 / (c * n)), grad.sum(1)


def fit_linear(train, val, test, n_classes, seed: int = 0):
    """Batched logistic regression; returns (val accuracy, test accuracy), each (P,), and the test
    predictions (P, N_test)."""
    (xt, yt), (xv, yv), (xs, ys) = train, val, test
    xt, xv, xs = standardise(xt, xv, xs)
    p, n, d = xt.shape
    offset = _absent_offset(n_classes, int(n_classes.max()))
    w = torch.zeros(p, d, offset.shape[1], device=xt.device)
    b = torch.zeros(p, offset.shape[1], device=xt.device)
    val_acc, test_acc, test_pred = [], [], []
    for c in LINEAR_C:
        # The strongest penalty first, each solution starting the next (sklearn's regularisation
        # path): the weaker penalties start near their optimum. The problems are independent,
        # so L-BFGS on their sum minimises each one. sklearn's stopping rule (scipy's L-BFGS-B:
        # gtol = tol = 1e-4 on the largest gradient entry of this same scaled loss; on the sum,
        # that bounds every problem's gradient) and memory (maxcor 10).
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=LINEAR_STEPS, history_size=10,
                                tolerance_grad=1e-4, tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def closure(c=c):
            loss, w.grad, b.grad = linear_loss_and_grad(w, b, xt, yt, offset, c)
            return loss

        opt.step(closure)
        with torch.no_grad():
            val_acc.append(_accuracy(_linear_logits(w, b, xv, offset), yv))
            test_pred.append(_linear_logits(w, b, xs, offset).argmax(-1))
            test_acc.append((test_pred[-1] == ys).float().mean(-1))
    val_acc, test_acc, test_pred = torch.stack(val_acc, 1), torch.stack(test_acc, 1), torch.stack(test_pred, 1)
    best = val_acc.argmax(1, keepdim=True)  # ties: the first C of LINEAR_C, as a loop over C would
    pred = test_pred.gather(1, best[:, :, None].expand(-1, 1, test_pred.shape[2]))[:, 0]
    return val_acc.gather(1, best)[:, 0], test_acc.gather(1, best)[:, 0], pred


def _mlp_logits(params, x, offset):
    """offset (P, C): -inf on absent classes (folded into the bias: no masking op per step)."""
    w1, b1, w2, b2 = params
    h = torch.relu(torch.baddbmm(b1[:, None], x, w1))
    return torch.baddbmm((b2 + offset)[:, None], h, w2)


def _streams(p: int, seed, stream) -> list[tuple[int, list[int]]]:
    """(seed, problem indices) of each random stream: problems of one stream (one member of a
    packed trial) draw their initialisation and batch order from one generator, in order."""
    seeds = [seed] * p if isinstance(seed, int) else list(seed)
    keys = [0] * p if stream is None else list(stream)
    out: dict = {}
    for i, key in enumerate(keys):
        out.setdefault(key, (seeds[i], []))[1].append(i)
    return list(out.values())


def fit_mlp(train, val, test, n_classes, seed=0, n_features=None, stream=None):
    """Batched one-hidden-layer MLPs, MLP_EPOCHS epochs, the best validation epoch kept; returns
    (val accuracy, test accuracy), each (P,), and the test predictions (P, N_test). n_features (P,): each problem's own code width
    before zero-padding (for its initialisation scale); default: all D. seed: one, or one per
    problem; stream: which problems share a random stream (default: all one), so a packed
    member's problems draw exactly what they draw in the member's own run."""
    (xt, yt), (xv, yv), (xs, ys) = train, val, test
    xt, xv, xs = standardise(xt, xv, xs)
    p, n, d = xt.shape
    dev = xt.device
    offset = _absent_offset(n_classes, int(n_classes.max()))
    streams = [(torch.Generator(device=dev).manual_seed(s), index) for s, index in _streams(p, seed, stream)]

    n_features = torch.full((p,), d, device=dev) if n_features is None else n_features.to(dev)

    def glorot(rows, cols, fan_in, fan_out):  # sklearn's initialisation, each problem its own
        bound = (6 / (fan_in + fan_out)).sqrt().view(p, 1, 1)
        u = torch.empty(p, rows, cols, device=dev)
        for gen, index in streams:
            u[index] = torch.rand(len(index), rows, cols, generator=gen, device=dev)
        return (u * 2 - 1) * bound

    def batch_order() -> torch.Tensor:  # (n,) when one stream, else (P, n)
        if len(streams) == 1:
            return torch.randperm(n, generator=streams[0][0], device=dev)
        order = torch.empty(p, n, dtype=torch.long, device=dev)
        for gen, index in streams:
            order[index] = torch.randperm(n, generator=gen, device=dev)
        return order

    hidden = torch.full((p,), float(MLP_HIDDEN), device=dev)
    params = [glorot(d, MLP_HIDDEN, n_features.float(), hidden), torch.zeros(p, MLP_HIDDEN, device=dev),
              glorot(MLP_HIDDEN, offset.shape[1], hidden, n_classes.float().to(dev)),
              torch.zeros(p, offset.shape[1], device=dev)]
    for t in params:
        t.requires_grad_(True)
    # sklearn's L2 penalty ½α‖W‖²/batch as Adam's (coupled) weight decay α/batch on the weights:
    # the same gradient, without computing the penalty each step
    opt = torch.optim.Adam([{"params": params[0::2], "weight_decay": MLP_ALPHA / min(MLP_BATCH, n)},
                            {"params": params[1::2]}], lr=MLP_LR, fused=True)  # Adam's one-kernel update (its flag's name)
    best = [t.detach().clone() for t in params]
    best_val = torch.full((p,), -1.0, device=dev)
    batch = min(MLP_BATCH, n)
    for _ in range(MLP_EPOCHS):
        perm = batch_order()
        if perm.dim() == 1:
            x_epoch, y_epoch = xt[:, perm], yt[:, perm]  # one gather per epoch; batches are views
        else:
            x_epoch, y_epoch = xt.gather(1, perm[..., None].expand(-1, -1, d)), yt.gather(1, perm)
        for start in range(0, n, batch):
            x, y = x_epoch[:, start:start + batch], y_epoch[:, start:start + batch]
            loss = _cross_entropy(_mlp_logits(params, x, offset), y).sum()
            opt.param_groups[0]["weight_decay"] = MLP_ALPHA / y.shape[1]  # a ragged last batch too
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = _accuracy(_mlp_logits(params, xv, offset), yv)
            better = acc > best_val
            for kept, now in zip(best, params):
                kept.copy_(torch.where(better.view(-1, *[1] * (now.dim() - 1)), now, kept))
            best_val = torch.where(better, acc, best_val)

    with torch.no_grad():
        pred = _mlp_logits(best, xs, offset).argmax(-1)
        return best_val, (pred == ys).float().mean(-1), pred


def fit(kind: str, train, val, test, n_classes, seed=0, n_features=None, stream=None):
    """(val accuracy, test accuracy, test predictions) of P stacked probes of one kind.

    train, val, test: ((P, N, D) float codes, (P, N) long labels); n_classes: (P,) long;
    n_features: (P,) each problem's code width before zero-padding to D; seed, stream: fit_mlp's
    (linear probes draw nothing at random).
    """
    if kind == "linear":
        return fit_linear(train, val, test, n_classes, seed)
    if kind == "mlp":
        return fit_mlp(train, val, test, n_classes, seed, n_features, stream)
    raise ValueError(f"unknown probe kind {kind!r}")


def fit_many(kind: str, problems: list[dict], device="cpu", seed: int = 0) -> list[tuple]:
    """(val accuracy, test accuracy, test predictions as a numpy array) of each problem, in order.

    A problem is a dict of numpy arrays {"train": (z, y), "val": (z, y), "test": (z, y)} and
    "n_classes", and optionally "seed" (default: `seed`) and "member" (problems of one member
    share a random stream, so each member's probes are those of its own run). Problems with the same row counts (and, for linear probes, class count) are
    stacked and trained in one batched call on `device`, whatever model they come from.
    """
    groups: dict[tuple, list[int]] = {}
    for i, prob in enumerate(problems):
        # linear probes: one stack per class count (masked classes slow L-BFGS down, measured)
        # and, on a CPU, per member: L-BFGS minimises its stack's summed loss, so its steps and
        # stopping rule would make a member's probes depend on the members packed beside it. On a
        # GPU, where packed members train with vmap (not bit-identical to their solo runs anyway),
        # one stack per class count keeps a 64-member trial's evaluation one L-BFGS loop, not 64
        per_member = torch.device(device).type == "cpu"
        key = (*(len(prob[s][1]) for s in SPLITS),
               *((prob["n_classes"], prob.get("member", 0) if per_member else 0) if kind == "linear" else (0, 0)))
        groups.setdefault(key, []).append(i)
    out: list = [None] * len(problems)
    for members in groups.values():
        batch = [problems[i] for i in members]
        splits = [(stack([b[s][0] for b in batch], device=device),
                   stack([b[s][1] for b in batch], dtype=torch.long, device=device)) for s in SPLITS]
        n_classes = torch.tensor([b["n_classes"] for b in batch], device=device)
        n_features = torch.tensor([b["train"][0].shape[1] for b in batch], device=device)
        seeds = [b.get("seed", seed) for b in batch]
        val, test, pred = fit(kind, *splits, n_classes, seeds, n_features, [b.get("member", 0) for b in batch])
        for i, v, t, y in zip(members, val.tolist(), test.tolist(), pred.cpu().numpy()):
            out[i] = (v, t, y)
    return out


def accuracy(kind: str, train: tuple, val: tuple, test: tuple, n_classes: int | None = None,
             seed: int = 0) -> tuple[float, float]:
    """(val accuracy, test accuracy) of one probe on numpy (z, y) splits."""
    n_classes = n_classes or int(max(y.max() for _, y in (train, val, test))) + 1
    problem = {"train": train, "val": val, "test": test, "n_classes": n_classes}
    return fit_many(kind, [problem], seed=seed)[0][:2]


def stack(arrays: list, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Stack (N, D_i) arrays (or (N,) labels) into one tensor, zero-padding D to the widest."""
    tensors = [torch.as_tensor(a, dtype=dtype) for a in arrays]
    if tensors[0].dim() == 2:
        width = max(t.shape[1] for t in tensors)
        tensors = [F.pad(t, (0, width - t.shape[1])) for t in tensors]
    return torch.stack(tensors).to(device)
