"""MARL: self-supervised Multi-view Audio Representation Learning (ISMIR 2024 LBD).

Kept free of heavy imports so that `analysis` can use `marl.names` and `marl.plots`
without importing torch or Ray.
"""

__version__ = "0.1.0"


def load_model(path, device="cpu"):
    """A trained model from its model.pt (see marl.encode.load_model); torch loads on first use."""
    from marl.encode import load_model as load

    return load(path, device)
