"""Evaluation on held-out clips (spec §4), with train / validation / test splits.

Each clip is encoded alone: private = its μ_p, shared = its μ_s (what a user has for one clip);
`fused` is the pair's product-of-experts code, one code and one order-free label per pair (the
lower of its views' classes), so its ceiling is 1. With `probe_input: sample` the
codes are one posterior draw instead of the means.

Probes (linear = logistic regression, mlp = one hidden layer; `marl.probes`) are fitted on
training clips, select their regularisation or stopping epoch on validation clips, and report
accuracy on both validation and test clips. Every probe of every model evaluated together
(the members of a packed trial) trains in one batched call on the models' device. The pure
metric functions (`mi_matrix`, `shuffled_mi_matrix`, `mig`, `discretize`, and the DCI, SAP,
modularity and explicitness of `marl.disentanglement`) take arrays and know nothing of models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from marl import disentanglement, names, probes
from marl.aggregate import exact_decomposition
from marl.config import Config
from marl.data import Dataset, Split
from marl.losses import Bank, decompose_kl

KL_SAMPLES = 512  # samples z of each subspace behind kl_exact/* (their standard error: docs/reproduction.md)


# ---------------------------------------------------------------- pure metrics
def discretize(codes: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Equal-width histogram bins per column (disentanglement_lib's convention)."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins=n_bins)[1]
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def discrete_mi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MI in nats between the discrete column a (n,) and each column of b (n, D) -> (D,),
    from contingency tables (sklearn's `mutual_info_score`, for all columns at once)."""
    _, a = np.unique(a, return_inverse=True)
    n, d = b.shape
    b_codes = np.stack([np.unique(b[:, j], return_inverse=True)[1] for j in range(d)], axis=1)
    na, nb = a.max() + 1, b_codes.max() + 1
    index = (np.arange(d)[None] * na + a[:, None]) * nb + b_codes
    joint = np.bincount(index.ravel(), minlength=d * na * nb).reshape(d, na, nb) / n
    pa, pb = joint.sum(2, keepdims=True), joint.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / (pa * pb)), 0.0)
    return np.maximum(terms.sum((1, 2)), 0.0)


def mi_matrix(codes: np.ndarray, factors: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """MI in nats between each discrete factor (columns of factors) and each code dimension.

    codes: (n, D) continuous, factors: (n, F) discrete -> (F, D).
    """
    binned = discretize(codes, n_bins)
    return np.stack([discrete_mi(factors[:, f], binned) for f in range(factors.shape[1])])


def shuffled_mi_matrix(codes: np.ndarray, factors: np.ndarray, n_bins: int = 20,
                       seed: int = 0) -> np.ndarray:
    """`mi_matrix` with each factor permuted across clips: what the binned estimate reads when
    factor and code are independent (its bias: ~0.09 nats at 2048 clips, 21 classes, 20 bins)."""
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(factors[:, f]) for f in range(factors.shape[1])], axis=1)
    return mi_matrix(codes, shuffled, n_bins)


def entropy(factor: np.ndarray) -> float:
    """H(factor) in nats; equals the MI of a factor with itself."""
    return float(discrete_mi(factor, factor[:, None])[0])


def majority_rate(train_labels: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy on `labels` of the constant predictor fitted on `train_labels` (their most
    frequent class, the lowest on ties): the chance level of a probe, 1/C for uniform classes."""
    values, counts = np.unique(train_labels, return_counts=True)
    return float(np.mean(labels == values[counts.argmax()]))


def mig(mi: np.ndarray, entropies: np.ndarray) -> float:
    """Mutual information gap: mean over factors of (top1 − top2 MI) / H(factor)."""
    if mi.shape[1] < 2:
        return float(np.mean(mi[:, 0] / entropies))
    top = np.sort(mi, axis=1)[:, ::-1]
    return float(np.mean((top[:, 0] - top[:, 1]) / entropies))


# ---------------------------------------------------------------- encoding
@torch.no_grad()
def encode(model, split: Split, device, max_pairs: int | None = None,
           sample_seed: int | None = None) -> dict[str, np.ndarray]:
    """Codes of the first max_pairs pairs of a split: per clip private, shared, both (2n rows,
    pair-major), and per pair the fused code (n rows). Posterior means, or with sample_seed
    one posterior draw per code."""
    was_training = model.training
    model.eval()
    x = split.x[:max_pairs].to(device)
    n = x.shape[0]
    post = model.encode(x.reshape(-1, *x.shape[2:]))
    p1 = type(post)(*(t.view(n, 2, -1)[:, 0] for t in post))
    p2 = type(post)(*(t.view(n, 2, -1)[:, 1] for t in post))
    fused_mu, fused_logvar = model.fuse(p1, p2)
    model.train(was_training)
    codes = {"private": (post.mu_p, post.logvar_p), "shared": (post.mu_s, post.logvar_s),
             "fused": (fused_mu, fused_logvar)}
    if sample_seed is None:
        out = {k: mu.cpu().numpy() for k, (mu, _) in codes.items()}
    else:
        gen = torch.Generator(device=post.mu_p.device).manual_seed(sample_seed)
        out = {k: (mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=gen, device=mu.device)).cpu().numpy()
               for k, (mu, lv) in codes.items()}
    out["both"] = np.concatenate([out["private"], out["shared"]], axis=1)
    return out


def labels(split: Split, tasks: dict[str, str], max_pairs: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per latent, per task: the labels its codes' rows carry (tasks: the factor each task reads,
    `Dataset.tasks`; a task whose factor is "" is left out).

    The fused code is one per pair and symmetric in the pair's views, which are exchangeable,
    so its label must be order-free: the lower of the two views' classes (the timbre, which
    both share; the lower pitch class). View 0's own pitch would cap any probe at ½.
    """
    per_clip = {task: split.factors[factor][:max_pairs].reshape(-1).numpy()
                for task, factor in tasks.items() if factor}
    per_pair = {task: split.factors[factor][:max_pairs].min(1).values.numpy()
                for task, factor in tasks.items() if factor}
    return {latent: (per_pair if latent == "fused" else per_clip) for latent in names.LATENTS}


# ---------------------------------------------------------------- the whole evaluation
def evaluate(model, data: Dataset, cfg: Config, device, with_umap: bool = False):
    """Metrics (names from marl.names) and a DataFrame of test latents with their factors."""
    return evaluate_members([model], [cfg], data, device, with_umap)[0]


def evaluate_members(models: list, cfgs: list[Config], data: Dataset, device,
                     with_umap: bool = False) -> list[tuple[dict, pd.DataFrame]]:
    """`evaluate` for several models on one dataset; all their probes train as one batch."""
    n_probe_pairs = max(1, cfgs[0].probe_train_clips // 2)
    ys = {"train": labels(data.train, data.tasks, n_probe_pairs), "val": labels(data.val, data.tasks),
          "test": labels(data.test, data.tasks)}
    tasks = [task for task in names.TASKS if data.tasks[task]]  # the others are not applicable: NaN
    codes = []
    for model, cfg in zip(models, cfgs):
        sample = cfg.seed if cfg.probe_input == "sample" else None
        codes.append({"train": encode(model, data.train, device, n_probe_pairs, sample),
                      "val": encode(model, data.val, device, None, sample),
                      "test": encode(model, data.test, device, None, sample)})

    keys = [(i, latent, task) for i in range(len(models)) for latent in names.LATENTS for task in tasks]
    classes = data.n_classes
    problems = [{**{s: (codes[i][s][latent], ys[s][latent][task]) for s in probes.SPLITS},
                 "n_classes": classes[task], "seed": cfgs[i].seed, "member": i} for i, latent, task in keys]
    nan = float("nan")
    chance = {names.chance(latent, task, split): majority_rate(ys["train"][latent][task], ys[split][latent][task])
              if task in tasks else nan for split in names.SPLITS for latent in names.LATENTS for task in names.TASKS}
    metrics: list[dict] = [dict(chance) for _ in models]
    for m in metrics:  # tasks that cannot be scored, and chroma where classes are not MIDI pitches
        m.update({names.probe(latent, task, split, kind): nan for split in names.SPLITS for kind in names.PROBE_KINDS
                  for latent in names.LATENTS for task in names.TASKS if task not in tasks})
        m.update({names.chroma(latent, kind): nan for kind in names.PROBE_KINDS for latent in names.LATENTS})
    midi = np.asarray(data.midi)
    for kind in names.PROBE_KINDS:
        for (i, latent, task), (val_acc, test_acc, pred) in zip(keys, probes.fit_many(kind, problems, device)):
            metrics[i][names.probe(latent, task, "val", kind)] = val_acc
            metrics[i][names.probe(latent, task, "test", kind)] = test_acc
            if task == "pitch" and len(midi):
                truth = ys["test"][latent]["pitch"]
                metrics[i][names.chroma(latent, kind)] = float(np.mean(midi[pred] % 12 == midi[truth] % 12))
        for m in metrics:
            for split in names.SPLITS:
                m[names.separation(split, kind)] = names.separation_score(m, split, kind)
                m[names.leakage(split, kind)] = names.leakage_score(m, split, kind)

    out = []
    for m, member_codes, cfg, model in zip(metrics, codes, cfgs, models):
        m.update(information_metrics(member_codes["test"], labels(data.test, names.FACTOR_OF_TASK)["private"], cfg.seed))
        m.update(disentanglement_metrics(member_codes, ys, tasks, cfg.seed))
        m.update(kl_diagnostics(model, cfg, data.train.x, device))
        latents = latents_frame(data.test, member_codes["test"], data.timbre_names)
        if with_umap:
            from marl.plots import umap_embedding  # imports matplotlib and umap: only when asked for

            for subspace in ("private", "both", "shared"):
                emb = umap_embedding(member_codes["test"][subspace], cfg.seed)
                latents[f"umap_{subspace}_x"], latents[f"umap_{subspace}_y"] = emb[:, 0], emb[:, 1]
        out.append((m, latents))
    return out


@torch.no_grad()
def kl_diagnostics(model, cfg: Config, train_x: torch.Tensor, device) -> dict:
    """kl_exact/* and kl_bias/* of each subspace the objective decomposes.

    All N training pairs are encoded; KL_SAMPLES of them (a seeded draw, at most N, rounded
    down to whole batches of the training batch size) give one z each. The exact terms use all N posteriors; the estimate is
    cfg.estimator's on those same z, in batches of cfg.batch_size (for "bank": bank_size
    entries drawn from the N current posteriors, the bank of a freshly refreshed epoch).
    """
    was_training = model.training
    model.eval()
    x = train_x.to(device)
    mu, logvar = model.subspace_posteriors(x[:, 0], x[:, 1])  # (3, N, D)
    model.train(was_training)
    n, b = mu.shape[1], cfg.batch_size
    gen = torch.Generator(device=mu.device).manual_seed(cfg.seed)
    index = torch.randperm(n, generator=gen, device=mu.device)[:min(n, max(b, KL_SAMPLES)) // b * b]
    out = {}
    for s, subspace in enumerate(names.KL_SUBSPACES):
        mu_z, logvar_z = mu[s, index], logvar[s, index]
        z = mu_z + torch.exp(0.5 * logvar_z) * torch.randn(mu_z.shape, generator=gen, device=mu.device)
        exact = exact_decomposition(z, mu_z, logvar_z, mu[s], logvar[s])
        estimates = []
        for batch in torch.arange(len(index), device=mu.device).split(b):
            bank = None
            if cfg.estimator == "bank":
                picks = torch.randint(n, (cfg.bank_size,), generator=gen, device=mu.device)
                bank = Bank(mu[s, picks], logvar[s, picks], index[batch][:, None] == picks[None])
            estimates.append(decompose_kl(z[batch], mu_z[batch], logvar_z[batch], n, cfg.estimator, bank))
        estimate = [torch.cat(t) for t in zip(*estimates)]
        for term, true, est in zip(names.KL_TERMS, exact, estimate):
            out[names.kl_exact(subspace, term)] = float(true.mean())
            out[names.kl_bias(subspace, term)] = float(est.mean() - true.mean())
    return out


def information_metrics(codes: dict[str, np.ndarray], task_labels: dict[str, np.ndarray],
                        seed: int = 0) -> dict:
    """MI matrices, their means and shuffled baselines, and MIG, of per-clip test codes."""
    factors = np.stack([task_labels[t] for t in names.TASKS], axis=1)
    entropies = np.array([entropy(factors[:, i]) for i in range(factors.shape[1])])
    metrics: dict = {}
    for subspace in (*names.SUBSPACES, "both"):
        mi = mi_matrix(codes[subspace], factors)
        metrics[names.mig(subspace)] = mig(mi, entropies)
        if subspace == "both":
            continue
        baseline = shuffled_mi_matrix(codes[subspace], factors, seed=seed)
        for i, task in enumerate(names.TASKS):
            metrics[names.mi(task, subspace)] = mi[i].tolist()
            metrics[names.mi_mean(task, subspace)] = float(mi[i].mean())
            metrics[names.mi_baseline(task, subspace)] = float(baseline[i].mean())
    return metrics


def disentanglement_metrics(codes: dict, ys: dict, tasks: list[str], seed: int = 0) -> dict:
    """dci/*, sap/*, modularity/*, explicitness/*, share/* (marl.disentanglement) of the per-clip
    "both" codes (private dimensions first): fitted on training clips, scored on test clips, over
    the applicable tasks' factors; NaN where a score needs a factor that is not among them."""
    out = dict.fromkeys(names.disentanglement_scalars(), float("nan"))
    if not tasks:
        return out
    (train, train_y), (test, test_y) = [(codes[s]["both"], np.stack([ys[s]["both"][t] for t in tasks], 1))
                                        for s in ("train", "test")]
    got = disentanglement.scores(train, train_y, test, test_y, mi_matrix(test, test_y),
                                 codes["test"]["private"].shape[1], seed=seed)
    out.update({names.dci(s): got[s.replace("/", "_")] for s in names.DCI_SCORES})
    out.update({names.sap(): got["sap"], names.modularity(): got["modularity"],
                **{names.explicitness(s): got[f"explicitness_{s}"] for s in ("train", "test")}})
    for measure, shares in got["shares"].items():
        for task, row in zip(tasks, shares):
            out.update({names.share(measure, task, s): float(v) for s, v in zip(names.SUBSPACES, row)})
    return out


def latents_frame(split: Split, codes: dict[str, np.ndarray], timbre_names=()) -> pd.DataFrame:
    """One row per test clip, with its factors and its timbre's name (`timbre_name`, so every
    figure can label the classes); the fused code is the pair's, repeated on both of its clips."""
    n = len(split)
    frame = {"pair": np.repeat(np.arange(n), 2), "view": np.tile([0, 1], n)}
    frame.update({k: v.reshape(-1).numpy() for k, v in split.factors.items()})
    if len(timbre_names):
        frame["timbre_name"] = np.asarray(timbre_names, dtype=object)[frame["timbre"]]
    for name in ("private", "shared", "fused"):
        values = np.repeat(codes[name], 2, axis=0) if name == "fused" else codes[name]
        for d in range(values.shape[1]):
            frame[f"{name}_{d}"] = values[:, d]
    return pd.DataFrame(frame)
