"""Vector codecs named by one string, in FAISS's factory spirit.

Grammar: ``[mrl<D>:]<base>`` where ``<base>`` is one of

* ``float32`` / ``float16``   exact / half-precision flat inner-product search;
* ``int8``                    scalar quantisation, per-dimension ranges calibrated on the corpus;
* ``binary``                  sign bits, Hamming search (d/8 bytes a vector);
* ``pq<M>`` or ``pq<M>x<b>``  product quantisation, M sub-quantisers of b bits (default 8);
* ``ivf<N>,pq<M>[x<b>]``      inverted file with N lists over PQ codes (``nprobe`` at search);
* ``hnsw[<m>]`` / ``hnsw[<m>],int8``   HNSW graph over float or int8 vectors (m links, default 32).

``mrl<D>:`` first truncates to the first D dimensions and renormalises (Matryoshka). Vectors are
L2-normalised before encoding (:mod:`embedlab.vectors`), so inner product = cosine. Every codec except ``binary`` is a FAISS
index built with ``faiss.index_factory``; ``binary`` uses ``faiss.IndexBinaryFlat``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from embedlab.errors import CodecError, ConfigError, EmbedlabError
from embedlab.validation import positive_int
from embedlab.vectors import prepare as vectors_prepare

ALLOWED = (
    "float32, float16, int8, binary, pq<M>[x<bits>], ivf<N>,pq<M>[x<bits>], hnsw[<m>], hnsw[<m>],int8; "
    "optionally prefixed by mrl<D>: (e.g. mrl256:int8)"
)
_BASE = re.compile(
    r"^(?:(?P<flat>float32|float16|int8|binary)"
    r"|pq(?P<pq_m>\d+)(?:x(?P<pq_b>\d+))?"
    r"|ivf(?P<ivf_n>\d+),pq(?P<ivf_m>\d+)(?:x(?P<ivf_b>\d+))?"
    r"|hnsw(?P<hnsw_m>\d+)?(?P<hnsw_int8>,int8)?)$"
)


@dataclass(frozen=True)
class Codec:
    spec: str
    base: str  # float32 | float16 | int8 | binary | pq | ivfpq | hnsw | hnsw_int8
    mrl_dim: int | None = None
    m: int = 0  # PQ sub-quantisers or HNSW links
    bits: int = 8
    nlist: int = 0

    @property
    def is_binary(self) -> bool:
        return self.base == "binary"

    @property
    def is_exact(self) -> bool:
        return self.base == "float32" and self.mrl_dim is None

    def input_dim(self, dim: int) -> int:
        return self.mrl_dim or dim

    def bytes_per_vector(self, dim: int) -> float:
        d = self.input_dim(dim)
        return {
            "float32": 4 * d,
            "float16": 2 * d,
            "int8": d,
            "binary": d / 8,
            "hnsw": 4 * d,
            "hnsw_int8": d,
        }.get(self.base, self.m * self.bits / 8)

    def factory_string(self, dim: int) -> str:
        d = self.input_dim(dim)
        if self.base in ("pq", "ivfpq") and d % self.m:
            raise CodecError(f"codec {self.spec}: {d} dimensions are not divisible into {self.m} PQ sub-vectors")
        return {
            "float32": "Flat",
            "float16": "SQfp16",
            "int8": "SQ8",
            "pq": f"PQ{self.m}x{self.bits}",
            "ivfpq": f"IVF{self.nlist},PQ{self.m}x{self.bits}",
            "hnsw": f"HNSW{self.m}",
            "hnsw_int8": f"HNSW{self.m},SQ8",
        }[self.base]

    def format(self) -> str:
        """The canonical string of this codec (defaults left out): ``parse_codec(c.format())`` equals ``c``
        in every field but ``spec``."""
        base = {
            "pq": f"pq{self.m}" + (f"x{self.bits}" if self.bits != 8 else ""),
            "ivfpq": f"ivf{self.nlist},pq{self.m}" + (f"x{self.bits}" if self.bits != 8 else ""),
            "hnsw": "hnsw" + (str(self.m) if self.m != 32 else ""),
            "hnsw_int8": "hnsw" + (str(self.m) if self.m != 32 else "") + ",int8",
        }.get(self.base, self.base)
        return (f"mrl{self.mrl_dim}:" if self.mrl_dim is not None else "") + base

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        """Validate, Matryoshka-truncate and L2-normalise to float32 (what the index stores)."""
        return prepare(vectors, self.mrl_dim)


def parse_codec(spec: str) -> Codec:
    if not isinstance(spec, str) or not spec.strip():
        raise CodecError(f"empty codec; allowed: {ALLOWED}")
    text = spec.strip().lower().replace(" ", "")
    mrl = None
    if text.startswith("mrl"):
        head, sep, rest = text.partition(":")
        if not sep or not head[3:].isdigit():
            raise CodecError(
                f"cannot parse codec '{spec}': a Matryoshka prefix is mrl<D>: with D > 0; allowed: {ALLOWED}"
            )
        mrl, text = _count(spec, "mrl<D>", head[3:]), rest
    m = _BASE.match(text)
    if not m:
        raise CodecError(f"cannot parse codec '{spec}'; allowed: {ALLOWED}")
    g = m.groupdict()
    if g["flat"]:
        return Codec(spec, g["flat"], mrl)
    if g["pq_m"]:
        return Codec(spec, "pq", mrl, m=_count(spec, "pq<M>", g["pq_m"]), bits=_count(spec, "x<bits>", g["pq_b"], 8))
    if g["ivf_n"]:
        return Codec(
            spec,
            "ivfpq",
            mrl,
            m=_count(spec, "pq<M>", g["ivf_m"]),
            bits=_count(spec, "x<bits>", g["ivf_b"], 8),
            nlist=_count(spec, "ivf<N>", g["ivf_n"]),
        )
    return Codec(spec, "hnsw_int8" if g["hnsw_int8"] else "hnsw", mrl, m=_count(spec, "hnsw<m>", g["hnsw_m"], 32))


def _count(spec: str, name: str, digits: str | None, default: int | None = None) -> int:
    """A count written in a codec string (``digits``; ``None``: not written, ``default``): a positive integer
    (:func:`embedlab.validation.positive_int`), else a one-line :class:`CodecError` naming the string."""
    if digits is None and default is not None:
        return default
    try:
        return positive_int(name, int(digits or ""))
    except (ConfigError, ValueError) as exc:
        raise CodecError(f"cannot parse codec '{spec}': {exc}; allowed: {ALLOWED}") from None


def prepare(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """float32, finite, 2-d, optionally truncated to ``dim``, then L2-normalised (:func:`embedlab.vectors.prepare`,
    its errors as :class:`CodecError`)."""
    try:
        return vectors_prepare(vectors, dim)
    except EmbedlabError as exc:
        raise CodecError(str(exc).replace(f"dim={dim} ", f"mrl{dim} ")) from None
