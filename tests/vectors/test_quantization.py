"""The one quantiser: hand-computed codes, and int8 checked against FAISS's SQ8 (``QT_8bit``) on random
data with the same ranges (FAISS is the independent reference for the int8 meaning)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import ConfigError, InputError
from embedlab.vectors import (
    PRECISIONS,
    Int8Ranges,
    calibrate_int8,
    check_precision,
    dequantize,
    quantize,
)


def test_one_precision_list():
    assert PRECISIONS == ("float32", "float16", "int8", "binary")
    with pytest.raises(ConfigError, match="float32, float16, int8, binary"):
        check_precision("int4")


def test_int8_hand_computed():
    r = Int8Ranges(np.array([-1.0, 0.0, 2.0]), np.array([1.0, 10.0, 2.0]))  # the last dimension is constant
    x = np.array([[-1.0, 0.0, 2.0], [1.0, 10.0, 2.0], [0.0, 5.0, 7.0], [-3.0, 20.0, -9.0]], dtype=np.float32)
    # u = (x - lo) / (hi - lo) clipped to [0, 1] (0 for a constant dimension); code = floor(255 u) - 128
    expected = np.array([[0, 0, 0], [255, 255, 0], [127, 127, 0], [0, 255, 0]]) - 128
    codes = quantize(x, "int8", r)
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes, expected)
    # code q decodes to lo + (q + 128 + 0.5) / 255 * (hi - lo)
    back = dequantize(codes, "int8", r)
    np.testing.assert_allclose(back[0], [-1 + 0.5 / 255 * 2, 0.5 / 255 * 10, 2.0], rtol=1e-6)
    np.testing.assert_allclose(back[2], [-1 + 127.5 / 255 * 2, 127.5 / 255 * 10, 2.0], rtol=1e-6)


def test_int8_needs_matching_ranges():
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ConfigError, match="needs per-dimension ranges"):
        quantize(x, "int8")
    with pytest.raises(ConfigError, match="4-d but the vectors are 3-d"):
        quantize(x, "int8", Int8Ranges(np.zeros(4), np.ones(4)))
    with pytest.raises(ConfigError, match="hi < lo"):
        Int8Ranges(np.zeros(2), np.array([1.0, -1.0]))
    np.testing.assert_array_equal(
        quantize(x, "int8", calibration=np.array([[0, 0, 0], [2, 2, 2]], dtype=np.float32)), np.full((2, 3), 127 - 128)
    )


def test_ranges_round_trip_through_json_exactly():
    rng = np.random.default_rng(3)
    r = calibrate_int8(rng.normal(size=(50, 7)).astype(np.float32))
    again = Int8Ranges.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r and again.lo.dtype == np.float32
    assert r.truncate(3) == Int8Ranges(r.lo[:3], r.hi[:3])
    with pytest.raises(ConfigError, match="'lo' and 'hi'"):
        Int8Ranges.from_dict({"lo": [0.0]})


def _faiss_sq8(ranges: Int8Ranges):
    faiss = pytest.importorskip("faiss")
    d = ranges.dim
    index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    index.train(np.stack([ranges.lo, ranges.hi]))  # RS_minmax over these two rows gives exactly [lo, hi]
    faiss.copy_array_to_vector(np.concatenate([ranges.lo, ranges.diff]).astype(np.float32), index.sq.trained)
    return faiss, index


@pytest.mark.parametrize("d", [8, 64, 384, 13, 59])
def test_int8_agrees_with_faiss_sq8(d):
    rng = np.random.default_rng(d)
    x = (rng.normal(size=(400, d)) * rng.uniform(0.05, 4, size=d)).astype(np.float32)
    x[:, 1] = 0.25  # a constant dimension (vdiff = 0)
    ranges = calibrate_int8(x[:150])  # calibrated on a subset: the rest falls outside the ranges too
    faiss, index = _faiss_sq8(ranges)
    # FAISS's own training gives the same ranges
    trained = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    trained.train(x[:150])
    np.testing.assert_array_equal(faiss.vector_to_array(trained.sq.trained), np.concatenate([ranges.lo, ranges.diff]))
    codes = quantize(x, "int8", ranges)
    faiss_codes = index.sa_encode(x)
    np.testing.assert_array_equal(codes.astype(np.int16) + 128, faiss_codes)
    decoded, faiss_decoded = dequantize(codes, "int8", ranges), index.sa_decode(faiss_codes)
    simd = any(flag in faiss.get_compile_options() for flag in ("AVX2", "AVX512", "NEON"))
    if d % 8 == 0 and simd:  # FAISS's SIMD decoder (one fused rounding), bit for bit
        np.testing.assert_array_equal(decoded, faiss_decoded)
    # FAISS's scalar decoder rounds the product first: at most one rounding of the range's scale apart
    scale = np.spacing(np.maximum(np.abs(ranges.lo), np.abs(ranges.hi)))
    assert (np.abs(decoded - faiss_decoded) <= scale).all()


def test_float16_and_binary():
    x = np.array([[0.1, -0.2, 0.0, 3.0, -1.0, 0.5, -0.5, 2.0, 1.0]], dtype=np.float32)[:, :8]
    half = quantize(x, "float16")
    assert half.dtype == np.float16
    np.testing.assert_array_equal(dequantize(half, "float16"), x.astype(np.float16).astype(np.float32))
    bits = quantize(x, "binary")  # signs 1 0 0 1 0 1 0 1 (0.0 is not > 0)
    np.testing.assert_array_equal(bits, [[0b10010101]])
    np.testing.assert_allclose(dequantize(bits, "binary"), [[1, -1, -1, 1, -1, 1, -1, 1]] / np.sqrt(8), rtol=1e-6)
    np.testing.assert_allclose(dequantize(bits, "binary", dim=4), [[1, -1, -1, 1]] / np.sqrt(4), rtol=1e-6)
    with pytest.raises(ConfigError, match="divisible by 8"):
        quantize(np.ones((1, 12), dtype=np.float32), "binary")
    assert quantize(x, "float32").dtype == np.float32


def test_bad_codes_are_rejected():
    with pytest.raises(InputError, match="int8 codes must be int8"):
        dequantize(np.zeros((1, 3), dtype=np.uint8), "int8", Int8Ranges(np.zeros(3), np.ones(3)))
    with pytest.raises(InputError, match="2-d"):
        dequantize(np.zeros(3, dtype=np.uint8), "binary")
    with pytest.raises(InputError, match="NaN"):
        quantize(np.array([[np.nan]]), "float16")
