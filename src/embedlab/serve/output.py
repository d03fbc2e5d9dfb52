"""Per-request output: Matryoshka truncation, L2 normalisation and the optional quantisation.

After the shared forward pass each request gets what ``Embedder.encode`` returns at its width
(:meth:`Output.finish`), then, when asked, its ``precision`` (:class:`Quantizer`: the index's int8 and
binary codecs for single vectors).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

import numpy as np

from embedlab.errors import ConfigError, Unavailable
from embedlab.serve.errors import BadRequest
from embedlab.validation import int_range
from embedlab.vectors import PRECISIONS, Int8Ranges, calibrate_int8, dequantize, prepare, quantize

T = TypeVar("T")


class Quantizer:
    """The served precisions of single vectors, by :mod:`embedlab.vectors` (the one quantiser, as the index
    and the shards use): each request's unit vector at its width, in ``float32``, ``float16``, ``int8``
    (FAISS SQ8 codes - 128, with per-dimension ranges calibrated on the calibration texts' unit vectors
    at that width) or ``binary`` (the sign bits packed 8 per byte, as ``VectorIndex`` stores ``binary``)."""

    def __init__(self, calibration_full: np.ndarray) -> None:
        self.calibration = np.asarray(calibration_full, dtype=np.float32)
        self._ranges: dict[int, Int8Ranges] = {}
        self._lock = threading.Lock()

    def int8_ranges(self, dim: int) -> Int8Ranges:
        """The int8 ranges at width ``dim``: min/max of the calibration vectors truncated to ``dim`` and
        renormalised (the vectors a request at that width gets)."""
        with self._lock:
            if dim not in self._ranges:
                self._ranges[dim] = calibrate_int8(prepare(self.calibration, dim))
            return self._ranges[dim]

    def encode(self, vectors: np.ndarray, precision: str) -> np.ndarray:
        if precision not in PRECISIONS:
            raise BadRequest(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}", param="precision")
        unit = prepare(vectors)
        if precision == "binary" and unit.shape[1] % 8:
            raise BadRequest(f"binary output needs a width divisible by 8; got {unit.shape[1]}", param="dimensions")
        ranges = self.int8_ranges(unit.shape[1]) if precision == "int8" else None
        return quantize(unit, precision, ranges)

    def decode_int8(self, codes: np.ndarray) -> np.ndarray:
        """Approximate unit vectors back from int8 output (for tests and clients of this module)."""
        codes = np.asarray(codes, dtype=np.int8)
        return dequantize(codes, "int8", self.int8_ranges(codes.shape[1]))


def request_param(check: Callable[..., T], name: str, value: Any, *args: Any) -> T:
    """``check(name, value, *args)`` from :mod:`embedlab.validation` for a request field: its one-line
    message as a 400 :class:`BadRequest` naming the field (``param``)."""
    try:
        return check(name, value, *args)
    except ConfigError as exc:
        raise BadRequest(str(exc), param=name) from None


class Output:
    """Truncation to a served width, normalisation and quantisation for one model (``default_dim`` wide,
    normalising or not); ``quantizer`` is set once the worker has embedded the calibration texts."""

    def __init__(self, default_dim: int, normalize: bool) -> None:
        self.default_dim, self.normalize = default_dim, bool(normalize)
        self.quantizer: Quantizer | None = None

    def check_dimensions(self, dimensions: int | None) -> int:
        if dimensions is None:
            return self.default_dim
        return request_param(int_range, "dimensions", dimensions, 1, self.default_dim)

    def finish(self, vectors: np.ndarray, dimensions: int | None = None, normalize: bool | None = None) -> np.ndarray:
        """Matryoshka truncation to ``dimensions`` then L2 normalisation when the model normalises (or
        ``normalize`` says so): exactly what ``Embedder.encode`` returns for the model's own width."""
        d = self.check_dimensions(dimensions)
        normalize = self.normalize if normalize is None else normalize
        if normalize:
            return prepare(vectors, d)  # truncate + L2-normalise, float32
        return np.ascontiguousarray(vectors[:, :d], dtype=np.float32)

    def quantize(self, vectors: np.ndarray, precision: str) -> np.ndarray:
        if precision == "float32":
            return vectors
        if self.quantizer is None:
            raise Unavailable("the int8 codec is not calibrated yet (the server is warming up)")
        return self.quantizer.encode(vectors, precision)


def packaged_calibration_texts() -> list[str]:
    """The packaged demo corpus and queries (35 short sentences): the default int8 calibration set."""
    from importlib import resources

    lines: list[str] = []
    for name in ("demo_corpus.txt", "demo_queries.txt"):
        text = resources.files("embedlab.data").joinpath(name).read_text(encoding="utf-8")
        lines += [line for line in text.splitlines() if line.strip()]
    return lines


__all__ = ["Output", "PRECISIONS", "Quantizer", "packaged_calibration_texts"]
