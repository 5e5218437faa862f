"""Metric names: defined once, used by train, the Ray trainable and analysis.

No torch or Ray here, so analysis can import it cheaply.
"""

LATENTS = ("private", "shared", "both", "fused")  # fused: the pair's PoE code (spec §4, §6)
TASKS = ("timbre", "pitch")
FACTOR_OF_TASK = {"timbre": "timbre", "pitch": "pitch_class"}  # task -> factor column
SUBSPACES = ("private", "shared")
LOSS_TERMS = ("total", "recon", "mi", "tc", "dim_kl")
SEPARATION = "separation"
LEAKAGE = "leakage"
DIVERGED = "diverged"


def probe(latent: str, task: str) -> str:
    return f"probe/{latent}/{task}"


def mi(factor: str, subspace: str) -> str:
    """A list: MI (nats) between the factor and each latent dimension of the subspace."""
    return f"mi/{factor}/{subspace}"


def mi_mean(factor: str, subspace: str) -> str:
    return f"mi_mean/{factor}/{subspace}"


def mig(subspace: str) -> str:
    return f"mig/{subspace}"


def loss(term: str) -> str:
    return f"loss/{term}"


def eval_scalars() -> list[str]:
    """Every scalar an evaluation reports (the per-dimension MI lists excluded)."""
    return ([probe(latent, task) for latent in LATENTS for task in TASKS] + [SEPARATION, LEAKAGE]
            + [mig(s) for s in (*SUBSPACES, "both")]
            + [mi_mean(f, s) for f in TASKS for s in SUBSPACES])


def separation(metrics: dict) -> float:
    """((shared→timbre − private→timbre) + (private→pitch − shared→pitch)) / 2; 1 is perfect."""
    return ((metrics[probe("shared", "timbre")] - metrics[probe("private", "timbre")])
            + (metrics[probe("private", "pitch")] - metrics[probe("shared", "pitch")])) / 2


def leakage(metrics: dict) -> float:
    """(private→timbre + shared→pitch) / 2: what each subspace knows that it should not."""
    return (metrics[probe("private", "timbre")] + metrics[probe("shared", "pitch")]) / 2
