"""Metric names: defined once, used by train, the Ray trainable and analysis.

Probe metrics say which clips scored them and which probe:
`probe/<split>/<kind>/<latent>/<task>` with split `val` (model selection) or `test` (what
tables report) and kind `linear` (logistic regression) or `mlp`. Probes are always fitted on
training clips. No torch or Ray here, so analysis can import it cheaply.
"""

import math

LATENTS = ("private", "shared", "both", "fused")  # fused: the pair's PoE code (spec §4, §6)
TASKS = ("timbre", "pitch")
FACTOR_OF_TASK = {"timbre": "timbre", "pitch": "pitch_class"}  # task -> factor column
SUBSPACES = ("private", "shared")
DATA_SPLITS = ("train", "val", "test")  # every dataset's splits, in this order
SPLITS = ("val", "test")  # the splits figures are reported on (probes fit on train)
PROBE_KINDS = ("linear", "mlp")
LOSS_TERMS = ("total", "recon", "mi", "tc", "dim_kl", "swap", "infonce", "orthogonal")
WEIGHTS = ("alpha", "beta", "gamma", "swap", "infonce", "orthogonal")  # config fields weighing the terms
DIVERGED = "diverged"
# seconds a run of a trial has spent training, evaluating and checkpointing before each report
TRIAL_TIMES = ("time/train_seconds", "time/eval_seconds", "time/checkpoint_seconds")


def member_prefix(i: int, packed: bool = True) -> str:
    """What prefixes member i's metrics (and names its checkpoint folder) in a packed trial."""
    return f"m{i}/" if packed else ""


def probe_prefix(split: str = "test", kind: str = "mlp") -> str:
    return f"probe/{split}/{kind}/"


def probe(latent: str, task: str, split: str = "test", kind: str = "mlp") -> str:
    """Raw accuracy of a probe; the defaults name the figure tables report."""
    return f"{probe_prefix(split, kind)}{latent}/{task}"


def chroma(latent: str, kind: str = "mlp") -> str:
    """Test clips: how often the pitch probe's class has the true pitch's chroma (its pitch
    class, octave ignored; HEAR's chroma accuracy). NaN where classes are not MIDI pitches."""
    return f"chroma/test/{kind}/{latent}"


def separation(split: str = "test", kind: str = "mlp") -> str:
    return f"separation/{split}/{kind}"


def leakage(split: str = "test", kind: str = "mlp") -> str:
    return f"leakage/{split}/{kind}"


SEPARATION = separation()  # reported: test clips, MLP probes (the paper's probe)
LEAKAGE = leakage()
SELECTION = separation("val")  # what model selection (Optuna, ASHA, "best") maximises


def mi(factor: str, subspace: str) -> str:
    """A list: MI (nats) between the factor and each latent dimension of the subspace (test clips)."""
    return f"mi/{factor}/{subspace}"


def mi_mean(factor: str, subspace: str) -> str:
    return f"mi_mean/{factor}/{subspace}"


def mi_baseline(factor: str, subspace: str) -> str:
    """mi_mean of the same codes with the factor shuffled: the binned estimator's bias."""
    return f"mi_baseline/{factor}/{subspace}"


def mig(subspace: str) -> str:
    return f"mig/{subspace}"


# The subspaces whose KL the objective decomposes: each view's private code, the fused shared code
KL_SUBSPACES = ("private0", "private1", "fused")
KL_TERMS = ("mi", "tc", "dim_kl")


def kl_exact(subspace: str, term: str) -> str:
    """The term over the whole aggregate posterior of the training posteriors (marl.aggregate)."""
    return f"kl_exact/{subspace}/{term}"


def kl_bias(subspace: str, term: str) -> str:
    """The training estimator's value minus kl_exact, on the same samples z."""
    return f"kl_bias/{subspace}/{term}"


# Disentanglement scores of the per-clip "both" code (marl.disentanglement): fitted on training
# clips, scored on test clips, over the applicable tasks' factors
DCI_SCORES = ("disentanglement", "completeness", "informativeness/train", "informativeness/test")
SHARE_MEASURES = ("importance", "mi")  # a factor's DCI importance; its binned MI on test clips


def dci(score: str) -> str:
    """DCI (Eastwood & Williams 2018): disentanglement and completeness of the importance matrix
    (fitted on training clips), informativeness (the boosters' accuracy) on train and test."""
    return f"dci/{score}"


def sap(split: str = "test") -> str:
    return f"sap/{split}"


def modularity(split: str = "test") -> str:
    return f"modularity/{split}"


def explicitness(split: str = "test") -> str:
    return f"explicitness/{split}"


def share(measure: str, factor: str, subspace: str) -> str:
    """The part of the factor's DCI importance or MI carried by the subspace's dimensions; the
    two subspaces' shares sum to 1."""
    return f"share/{measure}/{factor}/{subspace}"


def disentanglement_scalars() -> list[str]:
    return ([dci(s) for s in DCI_SCORES] + [sap(), modularity(), explicitness("train"), explicitness("test")]
            + [share(m, f, s) for m in SHARE_MEASURES for f in TASKS for s in SUBSPACES])


def loss(term: str) -> str:
    return f"loss/{term}"


def eval_scalars() -> list[str]:
    """Every scalar an evaluation reports (the per-dimension MI lists excluded)."""
    out = []
    for split in SPLITS:
        for kind in PROBE_KINDS:
            out += [probe(latent, task, split, kind) for latent in LATENTS for task in TASKS]
            out += [separation(split, kind), leakage(split, kind)]
        out += [chance(latent, task, split) for latent in LATENTS for task in TASKS]
    out += [chroma(latent, kind) for kind in PROBE_KINDS for latent in LATENTS]
    return (out + [mig(s) for s in (*SUBSPACES, "both")]
            + [mi_mean(f, s) for f in TASKS for s in SUBSPACES]
            + [mi_baseline(f, s) for f in TASKS for s in SUBSPACES]
            + [f(s, t) for f in (kl_exact, kl_bias) for s in KL_SUBSPACES for t in KL_TERMS]
            + disentanglement_scalars())


def chance(latent: str, task: str, split: str = "test") -> str:
    """What a constant predictor scores on the split's labels for this latent (marl.evaluate)."""
    return f"chance/{split}/{latent}/{task}"


def chance_corrected(accuracy: float, chance_rate: float) -> float:
    """(acc − chance) / (1 − chance): 0 for a constant predictor, 1 when perfect, so 4-class and
    21-class accuracies share one scale. chance_rate: the majority-class rate (1/C when the C
    classes are uniform)."""
    if chance_rate >= 1.0:  # one class only: a constant predictor is perfect, nothing to correct
        return float("nan")
    return (accuracy - chance_rate) / (1.0 - chance_rate)


def _mean_of_scored(terms: list[float]) -> float:
    """The mean of the terms that could be scored: a task that is not applicable (timbre on
    unseen instruments of unrelated families: NaN probes) drops out instead of voiding the score."""
    scored = [t for t in terms if not math.isnan(t)]
    return sum(scored) / len(scored) if scored else float("nan")


def separation_score(metrics: dict, split: str = "test", kind: str = "mlp") -> float:
    """Chance-corrected ((shared→timbre − private→timbre) + (private→pitch − shared→pitch)) / 2,
    each accuracy against its `chance` entry in metrics. 1 is perfect, 0 no separation. Where
    timbre cannot be scored, the pitch term alone."""
    cc = {(latent, task): chance_corrected(metrics[probe(latent, task, split, kind)],
                                           metrics[chance(latent, task, split)])
          for latent in SUBSPACES for task in TASKS}
    return _mean_of_scored([cc["shared", "timbre"] - cc["private", "timbre"],
                            cc["private", "pitch"] - cc["shared", "pitch"]])


def leakage_score(metrics: dict, split: str = "test", kind: str = "mlp") -> float:
    """Chance-corrected (private→timbre + shared→pitch) / 2: what each subspace knows that it
    should not; 0 is none. Where timbre cannot be scored, shared→pitch alone."""
    return _mean_of_scored([
        chance_corrected(metrics[probe("private", "timbre", split, kind)], metrics[chance("private", "timbre", split)]),
        chance_corrected(metrics[probe("shared", "pitch", split, kind)], metrics[chance("shared", "pitch", split)])])