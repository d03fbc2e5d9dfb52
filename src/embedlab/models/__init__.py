"""Embedding models: the :class:`Embedder` chain (source -> pooling head -> [projection] -> [truncate] ->
[normalize]; a sparse head such as SPLADE ends the chain), its sources (a transformer :class:`Backbone` with an attention mode, a static table
:class:`StaticSource`), the pooling heads, the chain modules and their registry, and the derived copies
(int8, ONNX Runtime). Model names are resolved by :mod:`embedlab.sources`.

Importing the package registers every module kind (``static`` and ``debias`` included), so a saved chain
of any kind loads through :data:`REGISTRY`.
"""

from __future__ import annotations

from embedlab.models.backbone import ATTENTION_MODES, Backbone
from embedlab.models.debias import DebiasProjection
from embedlab.models.embedder import Embedder, EncodeStats
from embedlab.models.modules import (
    REGISTRY,
    Module,
    Normalize,
    Projection,
    Truncate,
    register,
)
from embedlab.models.pooling import POOLING_HEADS, PoolingHead, build_head
from embedlab.models.sparse import SpladeHead
from embedlab.models.static import StaticSource
from embedlab.sources.aliases import ALIASES, DEFAULT_MODEL

__all__ = [
    "ALIASES",
    "ATTENTION_MODES",
    "DEFAULT_MODEL",
    "POOLING_HEADS",
    "REGISTRY",
    "Backbone",
    "DebiasProjection",
    "Embedder",
    "EncodeStats",
    "Module",
    "Normalize",
    "PoolingHead",
    "Projection",
    "SpladeHead",
    "StaticSource",
    "Truncate",
    "build_head",
    "register",
]
