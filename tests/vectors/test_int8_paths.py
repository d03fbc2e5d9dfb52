"""int8 has one meaning on every path: a vector quantised by the server (``serve.Quantizer``), by
``embed-corpus`` (the shards) and by ``index build`` (the index codec ``int8``, FAISS SQ8) gives the same
codes and decodes to the same values, given the same per-dimension ranges, and those equal an
independent hand-computed FAISS SQ8 reference (not embedlab's quantiser checked against itself)."""

from __future__ import annotations

import numpy as np
import pytest

N, D = 60, 32  # D % 8 == 0: FAISS decodes with its SIMD path (one rounding of the multiply-add)


def _unit_vectors(seed: int = 0) -> np.ndarray:
    """Unit vectors that renormalising leaves bit for bit as they are (the server and the index renormalise
    what they get), so every path sees the same float32 input."""
    from embedlab.vectors import prepare

    x = prepare(np.random.default_rng(seed).normal(size=(40 * N, D)).astype(np.float32))
    fixed = x[(prepare(x) == x).all(axis=1)]
    if len(fixed) < N:
        raise AssertionError(f"only {len(fixed)} of {len(x)} unit vectors are fixed points of renormalising")
    return fixed[:N]


def _sq8_reference(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FAISS ScalarQuantizer QT_8bit (RS_minmax), element by element in float32 as faiss's C++ does:
    ``u = (x - vmin) / vdiff`` clipped to [0, 1], ``code = (int)(255 * u)``; decoded
    ``vmin + ((code + 0.5) / 255) * vdiff``. Returns the SQ8 codes (0..255) and the decoded values
    (in float64, to be compared within one float32 ulp)."""
    f = np.float32
    codes = np.empty(x.shape, np.int64)
    values = np.empty(x.shape, np.float64)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            vmin, vdiff = f(lo[j]), f(f(hi[j]) - f(lo[j]))
            u = f(0) if vdiff == 0 else f(f(f(x[i, j]) - vmin) / vdiff)
            u = min(max(u, f(0)), f(1))
            c = int(f(255) * u)  # C's (int) cast: truncation toward zero
            codes[i, j] = c
            values[i, j] = float(vmin) + float(f(f(c + f(0.5)) / f(255))) * float(vdiff)
    return codes, values


@pytest.fixture(scope="module")
def data():
    from embedlab.vectors import calibrate_int8

    calib = _unit_vectors(0)
    queries = _unit_vectors(1)  # vectors the calibration did not see: some clip
    ranges = calibrate_int8(calib)
    np.testing.assert_array_equal(ranges.lo, calib.min(axis=0))
    np.testing.assert_array_equal(ranges.hi, calib.max(axis=0))
    return calib, queries, ranges


def _check(codes_signed: np.ndarray, decoded: np.ndarray, ref_codes: np.ndarray, ref_values: np.ndarray) -> None:
    assert codes_signed.dtype == np.int8
    np.testing.assert_array_equal(codes_signed.astype(np.int64) + 128, ref_codes)
    np.testing.assert_allclose(decoded, ref_values, rtol=2e-7, atol=1e-9)


def test_server_shards_and_index_agree_with_the_sq8_reference(tmp_path, data):
    import pyarrow.parquet as pq

    from embedlab.index import VectorIndex
    from embedlab.index.shards import FORMAT, EmbeddingShards, write_manifest, write_shard
    from embedlab.serve import Quantizer

    calib, queries, ranges = data
    for x in (calib, queries):
        ref_codes, ref_values = _sq8_reference(x, ranges.lo, ranges.hi)

        # the server: its ranges come from its calibration vectors (here the same unit vectors)
        q = Quantizer(calib)
        assert q.int8_ranges(D) == ranges
        served = q.encode(x, "int8")
        _check(served, q.decode_int8(served), ref_codes, ref_values)

        # embed-corpus's shards: one shard written with the manifest's ranges, read back through the public API
        d = tmp_path / f"shards-{x is calib}"
        d.mkdir()
        ids = [f"d{i}" for i in range(N)]
        entry = write_shard(d, 0, ids, x, None, "int8", ranges)
        model = {"name": "m", "dim": D, "fingerprint": "f"}
        write_manifest(
            d,
            {
                "format": FORMAT,
                "model": model,
                "precision": "int8",
                "int8_ranges": ranges.to_dict(),
                "has_texts": False,
                "corpus": {"rows": N, "files": []},
                "shards": [entry],
                "complete": True,
            },
        )
        stored = pq.read_table(d / entry["name"]).column("vector").combine_chunks()
        stored = stored.flatten().to_numpy().reshape(N, D)
        _, decoded, _ = EmbeddingShards(d).read_all()
        _check(stored, decoded, ref_codes, ref_values)

    # index build with codec int8: FAISS SQ8 trains its ranges on the corpus (= calibrate_int8 of it)
    index = VectorIndex.build(calib, [f"d{i}" for i in range(N)], "int8")
    import faiss

    sq = faiss.downcast_index(index.codes)
    trained = faiss.vector_to_array(sq.sq.trained)
    faiss_lo, faiss_diff = trained[:D], trained[D:]
    np.testing.assert_array_equal(faiss_lo, ranges.lo)
    np.testing.assert_array_equal(faiss_diff, ranges.diff)
    for x in (calib, queries):
        ref_codes, ref_values = _sq8_reference(x, ranges.lo, ranges.hi)
        codes = sq.sa_encode(np.ascontiguousarray(x))
        np.testing.assert_array_equal(codes.astype(np.int64), ref_codes)
        np.testing.assert_allclose(sq.sa_decode(codes), ref_values, rtol=2e-7, atol=1e-9)
    np.testing.assert_allclose(
        sq.reconstruct_n(0, N), _sq8_reference(calib, ranges.lo, ranges.hi)[1], rtol=2e-7, atol=1e-9
    )
