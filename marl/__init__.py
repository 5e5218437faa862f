"""MARL: self-supervised Multi-view Audio Representation Learning (ISMIR 2024 LBD).

Kept free of heavy imports so that `analysis` can use `marl.names` and `marl.plots`
without importing torch or Ray.
"""

__version__ = "0.1.0"
