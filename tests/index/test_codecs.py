"""Codec strings: parse -> format round trips, hand-written canonical forms, the fields each string
means, and one-line errors for strings that do not parse."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from embedlab.errors import CodecError, ConfigError
from embedlab.index.codecs import Codec, parse_codec

# spec -> (canonical string, the fields it means) written out by hand
CASES = {
    "float32": ("float32", {"base": "float32"}),
    "FLOAT16": ("float16", {"base": "float16"}),
    "int8": ("int8", {"base": "int8"}),
    " binary ": ("binary", {"base": "binary"}),
    "pq16": ("pq16", {"base": "pq", "m": 16, "bits": 8}),
    "pq16x8": ("pq16", {"base": "pq", "m": 16, "bits": 8}),
    "pq8x6": ("pq8x6", {"base": "pq", "m": 8, "bits": 6}),
    "ivf100,pq16x4": ("ivf100,pq16x4", {"base": "ivfpq", "nlist": 100, "m": 16, "bits": 4}),
    "ivf 64, pq8": ("ivf64,pq8", {"base": "ivfpq", "nlist": 64, "m": 8, "bits": 8}),
    "hnsw": ("hnsw", {"base": "hnsw", "m": 32}),
    "hnsw32": ("hnsw", {"base": "hnsw", "m": 32}),
    "hnsw16": ("hnsw16", {"base": "hnsw", "m": 16}),
    "hnsw,int8": ("hnsw,int8", {"base": "hnsw_int8", "m": 32}),
    "hnsw24,int8": ("hnsw24,int8", {"base": "hnsw_int8", "m": 24}),
    "mrl256:int8": ("mrl256:int8", {"base": "int8", "mrl_dim": 256}),
    "MRL64:ivf10,pq8x6": ("mrl64:ivf10,pq8x6", {"base": "ivfpq", "mrl_dim": 64, "nlist": 10, "m": 8, "bits": 6}),
    # every other form: each base under a prefix, written defaults dropped, leading zeros, spaces
    "mrl64:float32": ("mrl64:float32", {"base": "float32", "mrl_dim": 64}),
    "mrl128:float16": ("mrl128:float16", {"base": "float16", "mrl_dim": 128}),
    "mrl512:binary": ("mrl512:binary", {"base": "binary", "mrl_dim": 512}),
    "mrl1:pq1x1": ("mrl1:pq1x1", {"base": "pq", "mrl_dim": 1, "m": 1, "bits": 1}),
    "mrl32:pq4x8": ("mrl32:pq4", {"base": "pq", "mrl_dim": 32, "m": 4, "bits": 8}),
    "ivf64,pq8x8": ("ivf64,pq8", {"base": "ivfpq", "nlist": 64, "m": 8, "bits": 8}),
    "ivf1,pq1": ("ivf1,pq1", {"base": "ivfpq", "nlist": 1, "m": 1, "bits": 8}),
    "mrl256:hnsw": ("mrl256:hnsw", {"base": "hnsw", "mrl_dim": 256, "m": 32}),
    "mrl256:hnsw8": ("mrl256:hnsw8", {"base": "hnsw", "mrl_dim": 256, "m": 8}),
    "hnsw32,int8": ("hnsw,int8", {"base": "hnsw_int8", "m": 32}),
    "mrl96:hnsw64,int8": ("mrl96:hnsw64,int8", {"base": "hnsw_int8", "mrl_dim": 96, "m": 64}),
    "hnsw1": ("hnsw1", {"base": "hnsw", "m": 1}),
    "pq08x04": ("pq8x4", {"base": "pq", "m": 8, "bits": 4}),
    "mrl0064:int8": ("mrl64:int8", {"base": "int8", "mrl_dim": 64}),
    "Hnsw16, INT8": ("hnsw16,int8", {"base": "hnsw_int8", "m": 16}),
}


def _fields(codec: Codec) -> dict:
    return {k: v for k, v in dataclasses.asdict(codec).items() if k != "spec"}


@pytest.mark.parametrize("spec", sorted(CASES))
def test_parse_format_round_trip(spec):
    canonical, meaning = CASES[spec]
    codec = parse_codec(spec)
    expected = {"mrl_dim": None, "m": 0, "bits": 8, "nlist": 0, **meaning}
    assert _fields(codec) == expected
    assert codec.format() == canonical
    again = parse_codec(canonical)
    assert _fields(again) == _fields(codec) and again.format() == canonical


def test_every_generated_codec_round_trips():
    bases = [("float32", {}), ("float16", {}), ("int8", {}), ("binary", {})]
    bases += [("pq", {"m": m, "bits": b}) for m, b in itertools.product((1, 8, 96), (4, 8, 12))]
    bases += [("ivfpq", {"m": m, "bits": b, "nlist": n}) for m, b, n in itertools.product((4, 16), (6, 8), (1, 1024))]
    bases += [(b, {"m": m}) for b, m in itertools.product(("hnsw", "hnsw_int8"), (4, 32, 64))]
    for (base, extra), mrl in itertools.product(bases, (None, 1, 128)):
        codec = Codec("", base, mrl, **extra)
        text = codec.format()
        assert _fields(parse_codec(text)) == _fields(codec), text


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "   ",
        "float64",
        "pq",
        "pqx8",
        "ivf,pq8",
        "ivf8",
        "hnsw,int4",
        "mrl:int8",
        "mrl0:int8",
        "mrl-3:int8",
        "mrl64",
        "mrl64int8",
        "int8:mrl64",
        "hnsw16,float16",
    ],
)
def test_bad_strings_are_one_line_config_errors(spec):
    with pytest.raises(CodecError) as err:
        parse_codec(spec)
    assert isinstance(err.value, ConfigError) and "\n" not in str(err.value)
    assert "allowed:" in str(err.value)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("pq0", "cannot parse codec 'pq0': pq<M> must be a positive integer; got 0"),
        ("PQ00", "cannot parse codec 'PQ00': pq<M> must be a positive integer; got 0"),
        ("pq8x0", "cannot parse codec 'pq8x0': x<bits> must be a positive integer; got 0"),
        ("hnsw0", "cannot parse codec 'hnsw0': hnsw<m> must be a positive integer; got 0"),
        ("hnsw0,int8", "cannot parse codec 'hnsw0,int8': hnsw<m> must be a positive integer; got 0"),
        ("ivf0,pq8", "cannot parse codec 'ivf0,pq8': ivf<N> must be a positive integer; got 0"),
        ("ivf8,pq0", "cannot parse codec 'ivf8,pq0': pq<M> must be a positive integer; got 0"),
        ("ivf8,pq8x0", "cannot parse codec 'ivf8,pq8x0': x<bits> must be a positive integer; got 0"),
        ("mrl0:int8", "cannot parse codec 'mrl0:int8': mrl<D> must be a positive integer; got 0"),
        ("mrl0:pq0", "cannot parse codec 'mrl0:pq0': mrl<D> must be a positive integer; got 0"),
    ],
)
def test_zero_counts_are_refused_in_one_line(spec, message):
    with pytest.raises(CodecError) as err:
        parse_codec(spec)
    text = str(err.value)
    assert isinstance(err.value, ConfigError) and "\n" not in text
    assert text.startswith(message + "; allowed: ")


def test_factory_strings_and_sizes():
    assert parse_codec("ivf100,pq16x4").factory_string(64) == "IVF100,PQ16x4"
    assert parse_codec("hnsw,int8").factory_string(64) == "HNSW32,SQ8"
    assert parse_codec("mrl32:int8").bytes_per_vector(384) == 32
    assert parse_codec("binary").bytes_per_vector(384) == 48
    assert parse_codec("pq16x6").bytes_per_vector(384) == 12
    with pytest.raises(CodecError, match="not divisible into 7"):
        parse_codec("pq7").factory_string(64)


def test_prepare_is_the_vectors_rule_with_codec_errors():
    codec = parse_codec("mrl2:float32")
    np.testing.assert_allclose(codec.prepare(np.array([[3.0, 4.0, 12.0]])), [[0.6, 0.8]], atol=1e-7)
    with pytest.raises(CodecError, match="mrl4 needs at least 4 dimensions"):
        parse_codec("mrl4:int8").prepare(np.ones((2, 3)))
    with pytest.raises(CodecError, match="NaN"):
        codec.prepare(np.array([[np.nan, 1.0, 1.0]]))
