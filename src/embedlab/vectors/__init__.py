"""Vectors as arrays: truncation, normalisation, the precisions and their one quantiser, and the typed
results of each output kind (dense, sparse, multi-vector, binary).

A leaf package (numpy, :mod:`embedlab.errors` and :mod:`embedlab.io` for atomic writes; pyarrow lazily).
Everything that truncates, normalises or quantises an embedding calls :mod:`embedlab.vectors.ops` and
:mod:`embedlab.vectors.quantization`; :mod:`embedlab.vectors.representations` is the output contract.
"""

from embedlab.vectors.ops import check_dim, check_vectors, normalize, prepare, truncate
from embedlab.vectors.quantization import (
    PRECISIONS,
    Int8Ranges,
    calibrate_int8,
    check_precision,
    dequantize,
    quantize,
)
from embedlab.vectors.representations import (
    FEATURE_KEYS,
    KINDS,
    SAVE_SUFFIXES,
    TYPES,
    BinaryEmbeddings,
    DenseEmbeddings,
    Embeddings,
    MultiVectorEmbeddings,
    SparseEmbeddings,
    check_kind,
    concat,
    from_arrow,
    from_features,
    from_json,
    from_json_text,
    load_npz,
    save_embeddings,
)

__all__ = [
    "FEATURE_KEYS",
    "KINDS",
    "PRECISIONS",
    "SAVE_SUFFIXES",
    "TYPES",
    "BinaryEmbeddings",
    "DenseEmbeddings",
    "Embeddings",
    "Int8Ranges",
    "MultiVectorEmbeddings",
    "SparseEmbeddings",
    "calibrate_int8",
    "check_dim",
    "check_kind",
    "check_precision",
    "check_vectors",
    "concat",
    "dequantize",
    "from_arrow",
    "from_features",
    "from_json",
    "from_json_text",
    "load_npz",
    "save_embeddings",
    "normalize",
    "prepare",
    "quantize",
    "truncate",
]
