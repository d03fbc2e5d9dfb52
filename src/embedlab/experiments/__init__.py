"""Experiments over embedder designs: typed designs, the design grid and its frozen screen."""

from embedlab.experiments.design import PAPER_MODELS, Design

__all__ = ["Design", "PAPER_MODELS"]
