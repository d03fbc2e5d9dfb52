"""sentence-transformers compatibility: the ``type`` strings its ``modules.json`` uses, and their
mapping to embedlab's module kinds. The only place these strings live."""
from __future__ import annotations

ST_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
ST_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
ST_DENSE = "sentence_transformers.base.modules.dense.Dense"
ST_NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"
ST_IDENTITY = "torch.nn.modules.linear.Identity"

ST_TYPES: dict[str, str] = {
    ST_TRANSFORMER: "transformer",
    "sentence_transformers.models.Transformer": "transformer",
    "sentence_transformers.models.Transformer.Transformer": "transformer",
    ST_POOLING: "pooling",
    "sentence_transformers.models.Pooling": "pooling",
    "sentence_transformers.models.Pooling.Pooling": "pooling",
    ST_DENSE: "projection",
    "sentence_transformers.models.Dense": "projection",
    "sentence_transformers.models.Dense.Dense": "projection",
    ST_NORMALIZE: "normalize",
    "sentence_transformers.models.Normalize": "normalize",
    "sentence_transformers.models.Normalize.Normalize": "normalize",
}

# embedlab < 0.2 wrote the trainable heads' class path
_LEGACY = {"embedlab.models.pooling.LatentAttentionPooling": "pooling", "embedlab.models.pooling.MultiLayerPooling": "pooling"}


def kind_for_type(st_type: str) -> str | None:
    if st_type in ST_TYPES:
        return ST_TYPES[st_type]
    if st_type in _LEGACY:
        return _LEGACY[st_type]
    if st_type.startswith("embedlab.") and st_type.count(".") == 1:
        return st_type.split(".", 1)[1]
    return None
