"""Every codec against brute-force search on small random data; persistence, updates, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.index import CodecError, IndexStoreError, VectorIndex, parse_codec

rng = np.random.default_rng(0)
N, D, K = 2000, 64, 10
# clustered data, like embeddings: neighbours exist and are well separated from the bulk
CENTERS = rng.normal(size=(50, D))
X = (CENTERS[rng.integers(0, 50, N)] + 0.3 * rng.normal(size=(N, D))).astype(np.float32)
Q = (CENTERS[rng.integers(0, 50, 40)] + 0.3 * rng.normal(size=(40, D))).astype(np.float32)
IDS = [f"doc{i}" for i in range(N)]


def brute_force(x, q, k):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = qn @ xn.T
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return [[IDS[i] for i in row] for row in top], np.take_along_axis(s, top, 1)


def recall(got, ref):
    return np.mean([len(set(g) & set(r)) / len(r) for g, r in zip(got, ref)])


REF_IDS, REF_SCORES = brute_force(X, Q, K)


@pytest.mark.parametrize("spec, dim", [("float32", D), ("mrl32:float32", 32), ("mrl8:float32", 8)])
def test_exact_codecs_are_exact(spec, dim):
    """Flat float32 search is brute force over the (Matryoshka-truncated, renormalised) vectors."""
    ref_ids, ref_scores = brute_force(X[:, :dim], Q[:, :dim], K)
    idx = VectorIndex.build(X, IDS, spec)
    ids, scores = idx.search(Q, K)
    assert ids == ref_ids
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_float16_with_rescoring_finds_the_exact_neighbours():
    ids, _ = VectorIndex.build(X, IDS, "float16").search(Q, K, rescore=4)
    assert recall(ids, REF_IDS) == 1.0


@pytest.mark.parametrize(
    "spec,rescore,min_recall",
    [
        ("float16", 0, 0.99),
        ("int8", 0, 0.95),
        ("int8", 4, 0.99),
        ("binary", 0, 0.3),
        ("binary", 10, 0.95),
        ("pq16x6", 0, 0.3),
        ("pq16x6", 10, 0.95),
        ("ivf16,pq16x6", 10, 0.85),
        ("hnsw", 0, 0.95),
        ("hnsw16,int8", 4, 0.95),
        ("mrl32:int8", 0, 0.5),
        ("mrl32:int8", 10, 0.95),
        ("mrl32:binary", 20, 0.85),
    ],
)
def test_lossy_codecs_within_stated_recall(spec, rescore, min_recall):
    idx = VectorIndex.build(X, IDS, spec)
    ids, scores = idx.search(Q, K, rescore=rescore)
    assert recall(ids, REF_IDS) >= min_recall, recall(ids, REF_IDS)
    assert scores.shape == (len(Q), K) and np.all(np.diff(scores, axis=1) <= 1e-6)
    if rescore:  # rescored scores are exact cosines of the returned documents
        pos = {d: i for i, d in enumerate(IDS)}
        xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        exact = np.array([[qn[i] @ xn[pos[d]] for d in row] for i, row in enumerate(ids)])
        np.testing.assert_allclose(scores, exact, atol=1e-5 if idx.rescore_dtype == "float32" else 1e-2)


def test_int8_rescoring_copy():
    idx = VectorIndex.build(X, IDS, "binary", rescore="int8")
    ids, _ = idx.search(Q, K, rescore=10)
    assert recall(ids, REF_IDS) >= 0.9
    assert idx.store.dtype == np.uint8


@pytest.mark.parametrize("spec", ["float32", "int8", "binary", "pq16x6", "ivf16,pq16x6", "hnsw", "mrl32:int8"])
def test_save_load_round_trip_identical_results(tmp_path, spec):
    idx = VectorIndex.build(X, IDS, spec, texts=[f"text {i}" for i in range(N)], model={"fingerprint": "abc"})
    before = idx.search(Q, K, rescore=3)
    idx.save(tmp_path / "ix")
    again = VectorIndex.load(tmp_path / "ix")
    after = again.search(Q, K, rescore=3)
    assert after[0] == before[0]
    np.testing.assert_array_equal(after[1], before[1])
    assert again.texts[5] == "text 5" and again.manifest()["count"] == N


def test_add_and_delete(tmp_path):
    idx = VectorIndex.build(X[:1500], IDS[:1500], "int8")
    idx.add(X[1500:], IDS[1500:])
    ids, _ = idx.search(Q, K, rescore=4)
    assert recall(ids, REF_IDS) >= 0.99
    idx.delete(["doc0", "doc1"])
    assert len(idx) == N - 2 and "doc0" not in idx.ids
    exact = VectorIndex.build(X[2:], IDS[2:], "float32")
    got, _ = idx.search(Q, K, rescore=4)
    want, _ = exact.search(Q, K)
    assert recall(got, want) >= 0.99
    with pytest.raises(IndexStoreError, match="duplicate ids"):
        idx.add(X[:2], ["doc5", "new"])
    with pytest.raises(IndexStoreError, match="unknown ids"):
        idx.delete(["nope"])


def test_corruption_and_model_mismatch(tmp_path):
    idx = VectorIndex.build(X, IDS, "int8", model={"fingerprint": "abc", "name": "m1"})
    idx.save(tmp_path / "ix")
    with pytest.raises(IndexStoreError, match="fingerprint abc"):
        VectorIndex.load(tmp_path / "ix").check_model({"fingerprint": "zzz"})
    data = bytearray((tmp_path / "ix" / "rescore.npy").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "ix" / "rescore.npy").write_bytes(bytes(data))
    with pytest.raises(IndexStoreError, match="checksum"):
        VectorIndex.load(tmp_path / "ix")
    (tmp_path / "ix" / "ids.json").unlink()
    with pytest.raises(IndexStoreError, match="missing"):
        VectorIndex.load(tmp_path / "ix")


def test_failed_save_keeps_old_index(tmp_path, monkeypatch):
    idx = VectorIndex.build(X, IDS, "float32")
    idx.save(tmp_path / "ix")
    import faiss

    def boom(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(faiss, "write_index", boom)
    with pytest.raises(OSError):
        VectorIndex.build(X[:10], IDS[:10], "float32").save(tmp_path / "ix")
    assert len(VectorIndex.load(tmp_path / "ix")) == N
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


def test_bad_input():
    with pytest.raises(CodecError, match="allowed: float32"):
        parse_codec("int4")
    with pytest.raises(CodecError, match="mrl"):
        parse_codec("mrlx:int8")
    with pytest.raises(IndexStoreError, match="empty corpus"):
        VectorIndex.build(np.empty((0, D), np.float32), [], "float32")
    with pytest.raises(IndexStoreError, match="duplicate"):
        VectorIndex.build(X[:3], ["a", "b", "a"], "float32")
    idx = VectorIndex.build(X[:300], IDS[:300], "float32")
    with pytest.raises(IndexStoreError, match="dimensions"):
        idx.search(Q[:, :10])
    with pytest.raises(IndexStoreError, match=r"^k 301 is larger than the number of documents in the index \(300\)$"):
        idx.search(Q, 301)
    with pytest.raises(IndexStoreError, match=r"^k must be a positive integer; got 0$"):
        idx.search(Q, 0)
    with pytest.raises(IndexStoreError, match=r"^rescore must be an integer >= 0; got -1$"):
        idx.search(Q, 5, rescore=-1)
    with pytest.raises(CodecError, match="NaN"):
        VectorIndex.build(np.full((3, D), np.nan, np.float32), ["a", "b", "c"], "float32")
    with pytest.raises(CodecError, match="divisible"):
        VectorIndex.build(X, IDS, "pq7")
    with pytest.raises(CodecError, match="at least 256"):
        VectorIndex.build(X[:100], IDS[:100], "pq16")


def test_bytes_per_vector():
    assert parse_codec("float32").bytes_per_vector(384) == 1536
    assert parse_codec("binary").bytes_per_vector(384) == 48
    assert parse_codec("mrl256:int8").bytes_per_vector(384) == 256
    assert parse_codec("pq48").bytes_per_vector(384) == 48

    from embedlab import __version__

    manifest = VectorIndex.build(X[:300], IDS[:300], "binary").manifest()
    assert manifest == {
        "embedlab_version": __version__,
        "codec": "binary",
        "dim": D,
        "count": 300,
        "rescore": "float32",
        "bytes_per_vector": D // 8,
        "model": {},
        "has_texts": False,
    }
    assert json.loads(json.dumps(manifest)) == manifest  # plain JSON types (no NumPy integers)
    model = {"name": "m", "query_prompt": "q: "}
    manifest = VectorIndex.build(
        X[:300], IDS[:300], "mrl32:int8", texts=[f"t{i}" for i in range(300)], rescore="int8", model=model
    ).manifest()
    assert manifest == {
        "embedlab_version": __version__,
        "codec": "mrl32:int8",
        "dim": D,
        "count": 300,
        "rescore": "int8",
        "bytes_per_vector": 32,
        "model": model,
        "has_texts": True,
    }
    assert json.loads(json.dumps(manifest)) == manifest


def test_delete_with_an_int8_copy_keeps_rescored_scores_exact():
    idx = VectorIndex.build(X, IDS, "binary", rescore="int8")
    xn0 = X[:, 0] / np.linalg.norm(X, axis=1)
    gone = [IDS[i] for i in np.flatnonzero(xn0 > np.quantile(xn0, 0.8))]  # the rows that set dim 0's range
    keep_ids = [d for d in IDS if d not in set(gone)]
    idx.delete(gone)
    ids, scores = idx.search(Q, K, rescore=10)
    pos = {d: i for i, d in enumerate(IDS)}
    xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    exact = np.array([[qn[i] @ xn[pos[d]] for d in row] for i, row in enumerate(ids)])
    np.testing.assert_allclose(scores, exact, atol=2e-2)  # int8 copy: dequantisation error only
    want, _ = VectorIndex.build(X[[int(d[3:]) for d in keep_ids]], keep_ids, "float32").search(Q, K)
    assert recall(ids, want) >= 0.9


@pytest.mark.parametrize("spec", ["hnsw", "hnsw16", "hnsw,int8"])
def test_hnsw_asked_for_every_document_returns_every_document(spec):
    """Issue 22.7: k equal to the index size returned 297 of 300 (efSearch 64 < k); brute force is the reference."""
    rng = np.random.default_rng(3)
    x, q = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(5, 16)).astype(np.float32)
    ids = [f"d{i}" for i in range(300)]
    got, scores = VectorIndex.build(x, ids, spec).search(q, 300, rescore=1)
    xn, qn = x / np.linalg.norm(x, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    ref = np.sort(qn @ xn.T, axis=1)[:, ::-1]
    assert all(sorted(g) == sorted(ids) for g in got)
    np.testing.assert_allclose(scores, ref, atol=1e-5)


def test_search_on_a_shard_folder_says_what_to_run(tmp_path):
    from embedlab.index.shards import FORMAT

    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT, "shards": []}))
    with pytest.raises(IndexStoreError, match="index build --from-embeddings"):
        VectorIndex.load(tmp_path)
