"""Per-request output: Matryoshka truncation, L2 normalisation and the optional quantisation.

After the shared forward pass each request gets what ``Embedder.encode`` returns at its width
(:meth:`Output.finish`), then, when asked, its ``precision`` (:class:`Quantizer`: the index's int8 and
binary codecs for single vectors).
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from embedlab.errors import Unavailable
from embedlab.index.codecs import parse_codec, prepare
from embedlab.serve.errors import BadRequest

PRECISIONS = ("float32", "int8", "binary")


class Quantizer:
    """The index's codecs for single vectors: ``int8`` is FAISS's SQ8 (``parse_codec('int8')``: per-dimension
    min/max calibrated on the calibration texts, per width), returned as signed bytes (code - 128);
    ``binary`` is the sign bits packed 8 per byte, as ``VectorIndex`` stores ``binary``. Both encode the
    unit vector, as the index does."""

    def __init__(self, calibration_full: np.ndarray) -> None:
        self.calibration = np.asarray(calibration_full, dtype=np.float32)
        self._sq: dict[int, Any] = {}
        self._lock = threading.Lock()

    def int8_codec(self, dim: int) -> Any:
        with self._lock:
            if dim not in self._sq:
                import faiss

                codec = parse_codec("int8")
                sq = faiss.index_factory(dim, codec.factory_string(dim), faiss.METRIC_INNER_PRODUCT)
                sq.train(codec.prepare(self.calibration[:, :dim]))
                self._sq[dim] = sq
            return self._sq[dim]

    def encode(self, vectors: np.ndarray, precision: str) -> np.ndarray:
        unit = prepare(vectors)
        if precision == "binary":
            if unit.shape[1] % 8:
                raise BadRequest(f"binary output needs a width divisible by 8; got {unit.shape[1]}", param="dimensions")
            return np.packbits(unit > 0, axis=1)
        if precision == "int8":
            codes = self.int8_codec(unit.shape[1]).sa_encode(unit)
            return (codes.astype(np.int16) - 128).astype(np.int8)
        raise BadRequest(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}", param="precision")

    def int8_ranges(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(vmin, vdiff) of the int8 codec at width ``dim``: code q decodes to vmin + (q + 128 + 0.5) / 255 * vdiff."""
        import faiss

        trained = faiss.vector_to_array(self.int8_codec(dim).sq.trained).astype(np.float32)
        return trained[:dim], trained[dim:2 * dim]

    def decode_int8(self, codes: np.ndarray) -> np.ndarray:
        """Approximate unit vectors back from int8 output (for tests and clients of this module)."""
        codes = np.asarray(codes)
        return self.int8_codec(codes.shape[1]).sa_decode((codes.astype(np.int16) + 128).astype(np.uint8))


class Output:
    """Truncation to a served width, normalisation and quantisation for one model (``default_dim`` wide,
    normalising or not); ``quantizer`` is set once the worker has embedded the calibration texts."""

    def __init__(self, default_dim: int, normalize: bool) -> None:
        self.default_dim, self.normalize = default_dim, bool(normalize)
        self.quantizer: Quantizer | None = None

    def check_dimensions(self, dimensions: int | None) -> int:
        if dimensions is None:
            return self.default_dim
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= self.default_dim:
            raise BadRequest(f"dimensions must be an integer in 1..{self.default_dim} (the model's width); got {dimensions!r}",
                             param="dimensions")
        return dimensions

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
