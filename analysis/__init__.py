"""Analysis of sweep results: reads Parquet only (no torch, no Ray).

    from analysis import load_results
    df = load_results("results/paper_ablation")
"""

from analysis.load import load_results

__all__ = ["load_results"]
