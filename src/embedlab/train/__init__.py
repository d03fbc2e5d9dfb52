"""Contrastive training (first piece: in-batch InfoNCE with an optional Matryoshka loss)."""
from embedlab.train.config import TrainConfig, load_config
from embedlab.train.contrastive import info_nce, matryoshka_info_nce, train

__all__ = ["TrainConfig", "load_config", "info_nce", "matryoshka_info_nce", "train"]
