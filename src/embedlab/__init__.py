"""embedlab: build, train, evaluate, compress and serve text-embedding models made from language models."""
__version__ = "0.1.0"


def load(model: str = "minilm-l6", **kwargs):  # noqa: ANN201 - re-exported convenience
    """Load an :class:`~embedlab.models.Embedder` (alias, saved embedder, HF directory, GGUF or hub id)."""
    from embedlab.models import Embedder

    return Embedder.from_pretrained(model, **kwargs)
