"""Precisions of stored and served vectors, and the one quantiser (as sentence-transformers has one
``quantization.py``).

=========  =====================  ===============================================================
precision  codes                  meaning
=========  =====================  ===============================================================
float32    float32 (n, d)         the vectors as they are
float16    float16 (n, d)         IEEE half precision, round to nearest (FAISS ``SQfp16``)
int8       int8 (n, d)            FAISS ``SQ8`` scalar quantisation with per-dimension ranges
                                  ``[lo, hi]`` (:class:`Int8Ranges`, calibrated by :func:`calibrate_int8`
                                  and stored with the codes), written as signed bytes ``SQ8 code - 128``
binary     uint8 (n, d / 8)       sign bits ``x > 0``, 8 per byte, most significant first (``np.packbits``)
=========  =====================  ===============================================================

int8 is FAISS's ``ScalarQuantizer`` ``QT_8bit`` (non-uniform: one range per dimension, ``RS_minmax``):
``u = clip((x - lo) / (hi - lo), 0, 1)`` (0 where ``hi == lo``), ``code = floor(255 u)`` in 0..255, and
``code`` decodes to ``lo + (code + 0.5) / 255 * (hi - lo)``, in float32 with the last multiply-add
fused (one rounding, as FAISS's SIMD decoder, which it uses when ``d % 8 == 0``; its scalar decoder
for other widths rounds twice, so it may differ in the last bit). The signed byte is ``code - 128``. ``tests/vectors/test_quantization.py`` checks codes and decoded values against
``faiss.IndexScalarQuantizer`` on random data with the same ranges.

binary decodes to ``±1/sqrt(d)`` per dimension (a unit vector of the signs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embedlab.errors import ConfigError, InputError
from embedlab.vectors.ops import check_dim, check_vectors

PRECISIONS = ("float32", "float16", "int8", "binary")  # THE one list


def check_precision(precision: Any) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; a one-line ConfigError naming them otherwise."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


@dataclass(frozen=True, eq=False)
class Int8Ranges:
    """Per-dimension ``[lo, hi]`` of the int8 precision (FAISS SQ8's ``vmin`` and ``vmin + vdiff``)."""

    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self) -> None:
        lo = np.asarray(self.lo, dtype=np.float32).reshape(-1) if np.ndim(self.lo) <= 1 else None
        hi = np.asarray(self.hi, dtype=np.float32).reshape(-1) if np.ndim(self.hi) <= 1 else None
        if lo is None or hi is None or lo.shape != hi.shape or lo.size == 0:
            raise ConfigError(
                f"int8 ranges: lo and hi must be 1-d of the same non-zero length; got shapes "
                f"{np.shape(self.lo)} and {np.shape(self.hi)}"
            )
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ConfigError("int8 ranges contain NaN or inf")
        if (hi < lo).any():
            raise ConfigError(f"int8 ranges: hi < lo in dimension {int(np.flatnonzero(hi < lo)[0])}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def dim(self) -> int:
        return int(self.lo.size)

    @property
    def diff(self) -> np.ndarray:
        """``hi - lo`` in float32 (FAISS's ``vdiff``)."""
        return self.hi - self.lo

    def truncate(self, dim: int) -> Int8Ranges:
        """The ranges of the first ``dim`` dimensions. These are the ranges of the truncated vectors only
        when they are not renormalised after truncation; for a Matryoshka width, calibrate at that width."""
        dim = check_dim(dim, self.dim)
        return Int8Ranges(self.lo[:dim], self.hi[:dim])

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready; float32 values survive the round trip through Python floats exactly."""
        return {"lo": [float(v) for v in self.lo], "hi": [float(v) for v in self.hi]}

    @classmethod
    def from_dict(cls, data: Any) -> Int8Ranges:
        if not isinstance(data, dict) or set(data) != {"lo", "hi"}:
            raise ConfigError("int8 ranges must be an object with exactly the keys 'lo' and 'hi'")
        return cls(np.asarray(data["lo"], dtype=np.float32), np.asarray(data["hi"], dtype=np.float32))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Int8Ranges) and np.array_equal(self.lo, other.lo) and np.array_equal(self.hi, other.hi)

    __hash__ = None  # type: ignore[assignment]


def calibrate_int8(sample: Any) -> Int8Ranges:
    """Per-dimension min and max over the calibration vectors (FAISS SQ8's ``RS_minmax`` training)."""
    x = check_vectors(sample, "calibration vectors")
    if len(x) == 0:
        raise InputError("int8 calibration needs at least one vector")
    return Int8Ranges(x.min(axis=0), x.max(axis=0))


def _int8_ranges(ranges: Int8Ranges | None, calibration: Any, dim: int) -> Int8Ranges:
    if ranges is None and calibration is not None:
        ranges = calibrate_int8(calibration)
    if ranges is None:
        raise ConfigError("int8 precision needs per-dimension ranges (calibrate_int8 on sample vectors)")
    if not isinstance(ranges, Int8Ranges):
        raise ConfigError(f"int8 ranges must be an Int8Ranges; got {type(ranges).__name__}")
    if ranges.dim != dim:
        raise ConfigError(f"int8 ranges are {ranges.dim}-d but the vectors are {dim}-d")
    return ranges


def quantize(x: Any, precision: str, ranges: Int8Ranges | None = None, *, calibration: Any = None) -> np.ndarray:
    """The codes of ``x`` (n, d) in ``precision`` (see the module docstring). int8 needs ``ranges``, or
    ``calibration`` vectors to compute them from. The vectors are quantised as given (normalise first,
    e.g. with :func:`embedlab.vectors.prepare`, where unit vectors are meant)."""
    check_precision(precision)
    v = check_vectors(x)
    if precision == "float32":
        return v
    if precision == "float16":
        return v.astype(np.float16)
    if precision == "binary":
        if v.shape[1] % 8:
            raise ConfigError(f"binary precision needs a width divisible by 8; got {v.shape[1]}")
        return np.packbits(v > 0, axis=1)
    r = _int8_ranges(ranges, calibration, v.shape[1])
    diff = r.diff
    safe = np.where(diff > 0, diff, np.float32(1))
    u = np.where(diff > 0, (v - r.lo) / safe, np.float32(0))
    u = np.clip(u, np.float32(0), np.float32(1))
    codes = (np.float32(255) * u).astype(np.int16)  # truncation toward zero, as FAISS's (int)(255 * u)
    return (codes - 128).astype(np.int8)


def dequantize(codes: Any, precision: str, ranges: Int8Ranges | None = None, dim: int | None = None) -> np.ndarray:
    """float32 vectors back from :func:`quantize`'s codes. ``dim`` is the width of binary codes (default
    8 bits a byte); for the other precisions it must equal the codes' width when given."""
    check_precision(precision)
    c = np.asarray(codes)
    if c.ndim != 2:
        raise InputError(f"expected a 2-d array of codes, got shape {c.shape}")
    expected = {"float32": (np.float32,), "float16": (np.float16,), "int8": (np.int8,), "binary": (np.uint8,)}[
        precision
    ]
    if c.dtype.type not in expected:
        raise InputError(f"{precision} codes must be {np.dtype(expected[0]).name}; got {c.dtype}")
    if precision == "binary":
        width = 8 * c.shape[1]
        d = width if dim is None else check_dim(dim, width)
        bits = np.unpackbits(c, axis=1)[:, :d].astype(np.float32)
        return ((bits * 2 - 1) / np.sqrt(d)).astype(np.float32)
    if dim is not None and dim != c.shape[1]:
        raise ConfigError(f"{precision} codes are {c.shape[1]}-d, not {dim}-d")
    if precision in ("float32", "float16"):
        return c.astype(np.float32)
    r = _int8_ranges(ranges, None, c.shape[1])
    u = (c.astype(np.float32) + np.float32(128.5)) / np.float32(255)  # FAISS's (code + 0.5f) / 255.0f
    # lo + u * diff with one rounding (a fused multiply-add, as FAISS's SIMD decoder): the float32 product is
    # exact in float64, so only the sum is rounded (twice, float64 then float32; a tie at both is vanishingly rare)
    return (r.lo.astype(np.float64) + u.astype(np.float64) * r.diff).astype(np.float32)
