"""Contrastive training: configs, data and instructions, losses, GradCache, hard-negative mining, checkpoints, distributed runs and the trainer (the design grid is in :mod:`embedlab.experiments`)."""

from embedlab.train.config import LoraSettings, StageConfig, TrainConfig, load_config
from embedlab.train.data import ADAPTERS, DataSpec, Example, load_dataset
from embedlab.train.losses import contrastive_loss, info_nce, matryoshka_info_nce
from embedlab.train.trainer import Trainer, TrainingDiverged, run

__all__ = [
    "TrainConfig",
    "StageConfig",
    "LoraSettings",
    "load_config",
    "DataSpec",
    "Example",
    "ADAPTERS",
    "load_dataset",
    "info_nce",
    "contrastive_loss",
    "matryoshka_info_nce",
    "Trainer",
    "TrainingDiverged",
    "run",
]
