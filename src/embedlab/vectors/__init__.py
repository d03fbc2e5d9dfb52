"""Vectors as arrays: truncation, normalisation, the precisions and their one quantiser.

A leaf package (numpy and :mod:`embedlab.errors` only). Everything that truncates, normalises or
quantises an embedding calls :mod:`embedlab.vectors.ops` and :mod:`embedlab.vectors.quantization`.
"""
from embedlab.vectors.ops import check_dim, check_vectors, normalize, prepare, truncate
from embedlab.vectors.quantization import (PRECISIONS, Int8Ranges, calibrate_int8, check_precision, dequantize,
                                           quantize)

__all__ = ["PRECISIONS", "Int8Ranges", "calibrate_int8", "check_dim", "check_precision", "check_vectors", "dequantize",
           "normalize", "prepare", "quantize", "truncate"]
