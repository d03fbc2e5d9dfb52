"""embedlab: build, train, evaluate, compress and serve text-embedding models made from language models.

What a user reaches for first is importable from here, as in sentence-transformers' root::

    import embedlab
    model = embedlab.load("minilm-l6")                    # an Embedder
    vectors = model.encode(["a sentence"])
    results = embedlab.evaluate(model, "quick")           # task name -> result dict
    student, provenance = embedlab.distill(model)         # a static (Model2Vec-style) embedder
    index = embedlab.VectorIndex.build(model.encode(texts), ids, "float32")
    trainer = embedlab.Trainer(embedlab.TrainConfig(...), model)

The names are imported on first use (PEP 562), so ``import embedlab`` itself loads no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from embedlab._version import __version__

# name -> the module that defines it (imported on first access)
_EXPORTS = {
    "Embedder": "embedlab.models.embedder",
    "Trainer": "embedlab.train.trainer",
    "TrainConfig": "embedlab.train.config",
    "evaluate": "embedlab.eval.suite",
    "VectorIndex": "embedlab.index.store",
    "distill": "embedlab.models.static",
}

__all__ = [
    "Embedder",
    "TrainConfig",
    "Trainer",
    "VectorIndex",
    "__version__",
    "distill",
    "evaluate",
    "load",
]  # = _EXPORTS + load, __version__ (a test checks)


def load(model: str | None = None, **kwargs: Any) -> Any:
    """Load an :class:`~embedlab.models.Embedder`: an alias (default ``minilm-l6``), a saved embedder or static
    model, an HF directory, a GGUF file or a hub id; keyword arguments as :meth:`Embedder.from_pretrained`."""
    from embedlab.models import Embedder
    from embedlab.sources.aliases import DEFAULT_MODEL

    return Embedder.from_pretrained(model if model is not None else DEFAULT_MODEL, **kwargs)


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'embedlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
