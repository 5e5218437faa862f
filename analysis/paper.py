"""The numbers the paper reported (../shared/reference/MARL_SPEC.md §5)."""

import pandas as pd

ACCURACIES = ["private/timbre", "shared/timbre", "private/pitch", "shared/pitch"]

# Ablation bars read off paper_figures/plots_ablation.png (±0.02). (term, weight) -> accuracies
ABLATION = {
    ("recon", 0.0): (0.85, 0.78, 0.70, 0.04),
    ("gamma", 0.1): (0.70, 0.96, 0.79, 0.15),
    ("gamma", 0.5): (0.75, 0.97, 0.82, 0.16),
    ("gamma", 1.0): (0.75, 0.89, 0.78, 0.15),
    ("alpha", 1.0): (0.83, 0.28, 0.65, 0.06),
    ("beta", 0.5): (0.85, 0.27, 0.62, 0.06),
    ("beta", 1.0): (0.83, 0.32, 0.43, 0.06),
}

# Headline probe table (paper_figures/table_cam.png; its configuration is not stated).
PROBE_TABLE = {"private": (0.7431, 0.7663), "shared": (0.9741, 0.2978), "both": (0.9809, 0.8772)}

# MI matrix ranges (nats) over dimensions Z1..Z8 (paper_figures/mi_matrix_cam.png).
MI_RANGES = {("timbre", "shared"): (0.69, 1.2), ("timbre", "private"): (0.05, 0.16),
             ("pitch", "private"): (0.22, 0.43), ("pitch", "shared"): (0.08, 0.16)}


def ablation_frame() -> pd.DataFrame:
    rows = [{"term": t, "weight": w, **dict(zip(ACCURACIES, acc))} for (t, w), acc in ABLATION.items()]
    return pd.DataFrame(rows)
