"""Backbones, attention modes, pooling heads, chain modules and the Embedder."""
from embedlab.models.aliases import ALIASES, DEFAULT_MODEL
from embedlab.models.backbone import ATTENTION_MODES, Backbone
from embedlab.models.embedder import Embedder, EncodeStats
from embedlab.models.modules import REGISTRY, Module, Normalize, Projection, Truncate, register
from embedlab.models.pooling import POOLING_HEADS, PoolingHead, build_head
from embedlab.models.static import StaticEmbedder  # static (model2vec-layout) models: embedlab distill
from embedlab.models.debias import DebiasProjection  # registers the "debias" module kind

__all__ = ["ALIASES", "DEFAULT_MODEL", "ATTENTION_MODES", "Backbone", "Embedder", "EncodeStats", "POOLING_HEADS",
           "PoolingHead", "build_head", "Module", "Normalize", "Projection", "Truncate", "REGISTRY", "register"]
