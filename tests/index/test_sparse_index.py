"""The exact sparse index against brute force (dense numpy dot products, ranked by the evaluator's own
rank_documents); updates, persistence, corruption, vocabulary and model mismatch, info by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import IndexStoreError
from embedlab.eval.evaluators import rank_documents
from embedlab.index.sparse import SparseIndex
from embedlab.vectors import SparseEmbeddings

V = 200


def _random_sparse(rng, n, vocab=V, active=(0, 12), signed=False):
    """Rows of 0..12 active dims; weights are multiples of 1/8 so every dot product is exact in float64
    (and exact ties are exact), whatever the summation order."""
    rows = []
    for _ in range(n):
        m = int(rng.integers(active[0], active[1] + 1))
        idx = np.sort(rng.choice(vocab, size=m, replace=False))
        val = rng.integers(1, 17, size=m) / 8.0
        if signed:
            val = val * rng.choice([-1.0, 1.0], size=m)
        rows.append((idx, val))
    return rows


def _corpus(rng, n=400, signed=False):
    """``n`` documents with planted ties: every 10th is a copy of an earlier one under another id, and
    the weights are coarse, so distinct documents also tie often; ids are shuffled so row order and id
    order disagree."""
    rows = _random_sparse(rng, n, signed=signed)
    for i in range(10, n, 10):
        rows[i] = rows[int(rng.integers(0, i))]
    ids = [f"d{j:04d}" for j in rng.permutation(n)]
    return ids, SparseEmbeddings.from_rows(rows, V)


def brute_force(ids, docs: SparseEmbeddings, queries: SparseEmbeddings, k):
    """Dense scores of every query against every document; the hits are the documents sharing a dimension
    with the query, ranked by rank_documents (score descending, ties by id descending)."""
    d = docs.to_dense().astype(np.float64)
    q = queries.to_dense().astype(np.float64)
    scores = q @ d.T
    shares = (q != 0).astype(np.int64) @ (d != 0).astype(np.int64).T > 0
    out = []
    for i in range(len(queries)):
        cand = np.flatnonzero(shares[i])
        if len(cand) == 0:
            out.append(([], np.zeros(0)))
            continue
        # the full ranking, then the cut: rank_documents(..., k) with k < candidates lets np.argpartition
        # pick which of the documents tied at the k-th score are kept (not by id)
        ranked = rank_documents(scores[i, cand], [ids[c] for c in cand], len(cand))[:k]
        pos = {x: j for j, x in enumerate(ids)}
        out.append((ranked, np.array([scores[i, pos[r]] for r in ranked])))
    return out


def assert_same(got, ref):
    assert len(got) == len(ref)
    for (gi, gs), (ri, rs) in zip(got, ref):
        assert gi == ri
        np.testing.assert_array_equal(gs, rs)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("k", [1, 5, 10, 50, 1000])
def test_search_equals_brute_force(signed, k):
    rng = np.random.default_rng(7 + k + signed)
    ids, docs = _corpus(rng, signed=signed)
    # queries: random, copies of documents (their duplicates tie exactly), and one empty
    planted = [docs.row(j) for j in range(10, 400, 40)]  # each has an exact copy under another id
    rows = _random_sparse(rng, 60, active=(1, 15), signed=signed) + planted
    rows += [docs.row(int(j)) for j in rng.integers(0, 400, 10)]
    rows.append((np.zeros(0, np.int64), np.zeros(0)))
    queries = SparseEmbeddings.from_rows(rows, V)
    index = SparseIndex.build(ids, docs)
    got = index.search(queries, k)
    ref = brute_force(ids, docs, queries, k)
    assert_same(got, ref)
    # the planted ties are exercised: some query has two documents tied at the cut (the k-th and the next)
    full = brute_force(ids, docs, queries, 10**6)
    assert any(len(s) > k and s[k - 1] == s[k] for _, s in full) or k > max(len(s) for _, s in full)
    assert any((np.diff(s) == 0).any() for _, s in full)
    assert all(len(h) <= k for h, _ in got)


def test_search_equals_brute_force_continuous_weights():
    """Float weights (no exact ties): the same ids, scores equal to rounding."""
    rng = np.random.default_rng(3)
    rows = [(np.sort(rng.choice(V, 8, replace=False)), rng.random(8) + 0.01) for _ in range(300)]
    docs = SparseEmbeddings.from_rows(rows, V)
    ids = [f"doc{i}" for i in range(300)]
    queries = SparseEmbeddings.from_rows(
        [(np.sort(rng.choice(V, 6, replace=False)), rng.random(6)) for _ in range(50)], V
    )
    got = SparseIndex.build(ids, docs).search(queries, 20)
    ref = brute_force(ids, docs, queries, 20)
    for (gi, gs), (ri, rs) in zip(got, ref):
        assert gi == ri
        np.testing.assert_allclose(gs, rs, rtol=1e-12)


def test_hand_checked_toy_search_and_ties():
    # docs over a vocabulary of 5; query (1: 2.0, 3: 1.0)
    docs = SparseEmbeddings.from_rows(
        [([1], [1.0]), ([1, 3], [0.5, 1.0]), ([0, 4], [9.0, 9.0]), ([3], [2.0]), ([1, 3], [0.5, 1.0])], 5
    )
    index = SparseIndex.build(["a", "b", "c", "d", "e"], docs)
    [(ids, scores)] = index.search(SparseEmbeddings.from_rows([([1, 3], [2.0, 1.0])], 5), 10)
    # a = 2, b = e = 1 + 1 = 2, d = 2: four-way tie at 2 broken by id descending; c shares nothing
    assert ids == ["e", "d", "b", "a"]
    np.testing.assert_array_equal(scores, [2.0, 2.0, 2.0, 2.0])
    [(ids, _)] = index.search(SparseEmbeddings.from_rows([([1, 3], [2.0, 1.0])], 5), 2)
    assert ids == ["e", "d"]
    # an empty query has no hits (not arbitrary documents)
    [(ids, scores)] = index.search(SparseEmbeddings.from_rows([([], [])], 5), 3)
    assert ids == [] and scores.shape == (0,)


def test_add_delete_then_brute_force():
    rng = np.random.default_rng(11)
    ids, docs = _corpus(rng, n=300)
    index = SparseIndex.build(ids[:200], docs.take(range(200)))
    index.add(ids[200:], docs.take(range(200, 300)))
    gone = set(rng.choice(ids, 90, replace=False).tolist())
    assert index.delete(sorted(gone)) == 90
    keep = [j for j, x in enumerate(ids) if x not in gone]
    queries = SparseEmbeddings.from_rows(_random_sparse(rng, 50, active=(1, 15)), V)
    assert len(index) == 210
    assert_same(index.search(queries, 15), brute_force([ids[j] for j in keep], docs.take(keep), queries, 15))
    # a deleted id can be added again
    index.add([ids[keep[0]] + "-again"], docs.take([keep[0]]))
    assert len(index) == 211


def test_add_and_delete_refusals():
    docs = SparseEmbeddings.from_rows([([0], [1.0]), ([1], [1.0])], 4)
    index = SparseIndex.build(["a", "b"], docs)
    with pytest.raises(IndexStoreError, match=r"^duplicate ids: a$"):
        index.add(["a"], docs.take([0]))
    with pytest.raises(IndexStoreError, match=r"^duplicate ids: c$"):
        index.add(["c", "c"], docs)
    with pytest.raises(IndexStoreError, match=r"^unknown ids: x, y$"):
        index.delete(["y", "a", "x"])
    assert len(index) == 2  # nothing changed by the refused calls
    with pytest.raises(IndexStoreError, match="2 embeddings but 1 ids"):
        index.add(["z"], docs)
    with pytest.raises(IndexStoreError, match="empty index"):
        index.delete(["a", "b"])
    with pytest.raises(IndexStoreError, match="empty corpus"):
        SparseIndex.build([], SparseEmbeddings.from_rows([], 4))
    with pytest.raises(IndexStoreError, match="positive integer"):
        index.search(docs, 0)


def test_vocab_and_fingerprint_mismatch(tmp_path):
    docs = SparseEmbeddings.from_rows([([0, 2], [1.0, 1.0]), ([1], [1.0])], 4)
    index = SparseIndex.build(["a", "b"], docs, model_fingerprint="f00d", vocab=["w", "x", "y", "z"])
    other = SparseEmbeddings.from_rows([([0], [1.0])], 6)
    with pytest.raises(IndexStoreError, match=r"vocabulary of 6 entries, the index 4") as e:
        index.search(other, 1)
    assert "\n" not in str(e.value)
    with pytest.raises(IndexStoreError, match=r"vocabulary of 6 entries, the index 4"):
        index.add(["c"], other)
    with pytest.raises(IndexStoreError, match=r"fingerprint f00d; the query model has fingerprint beef"):
        index.search(docs, 1, model_fingerprint="beef")
    index.save(tmp_path / "idx")
    with pytest.raises(IndexStoreError, match=r"fingerprint f00d; the expected model has fingerprint beef") as e:
        SparseIndex.load(tmp_path / "idx", expect_fingerprint="beef")
    assert "\n" not in str(e.value)
    assert SparseIndex.load(tmp_path / "idx", expect_fingerprint="f00d").model_fingerprint == "f00d"
    unmarked = SparseIndex.build(["a", "b"], docs)
    with pytest.raises(IndexStoreError, match="none recorded"):
        unmarked.check_model("beef")
    with pytest.raises(IndexStoreError, match="vocab must be 4 strings"):
        SparseIndex.build(["a", "b"], docs, vocab=["w"])


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    ids, docs = _corpus(rng, n=120)
    vocab = [f"tok{i}" for i in range(V)]
    index = SparseIndex.build(ids, docs, model_fingerprint="abc123", vocab=vocab)
    index.save(tmp_path / "idx")
    again = SparseIndex.load(tmp_path / "idx")
    assert again.ids == ids and again.vocab == vocab and again.model_fingerprint == "abc123"
    np.testing.assert_array_equal(again.matrix.toarray(), docs.to_dense())
    queries = SparseEmbeddings.from_rows(_random_sparse(rng, 30, active=(1, 10)), V)
    assert_same(again.search(queries, 7), index.search(queries, 7))
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["kind"] == "sparse" and manifest["vocab_size"] == V
    assert manifest["model"]["fingerprint"] == "abc123"
    assert set(manifest["files"]) == {"indptr.npy", "indices.npy", "values.npy", "ids.json", "vocab.json"}
    # saving again over the same folder (after an update) replaces it
    again.delete([ids[0]])
    again.save(tmp_path / "idx")
    assert SparseIndex.load(tmp_path / "idx").ids == ids[1:]


@pytest.mark.parametrize("name", ["indptr.npy", "indices.npy", "values.npy", "ids.json", "vocab.json", "manifest.json"])
def test_flipped_byte_is_refused(tmp_path, name):
    rng = np.random.default_rng(1)
    ids, docs = _corpus(rng, n=50)
    SparseIndex.build(ids, docs, vocab=[f"t{i}" for i in range(V)]).save(tmp_path / "idx")
    f = tmp_path / "idx" / name
    data = bytearray(f.read_bytes())
    pos = len(data) // 2 if name != "manifest.json" else data.index(b'"vocab_size": ') + len(b'"vocab_size": ')
    data[pos] ^= 0x01  # the manifest: vocab_size 200 -> 300 (still valid JSON)
    f.write_bytes(bytes(data))
    with pytest.raises(IndexStoreError, match="corrupt") as e:
        SparseIndex.load(tmp_path / "idx")
    assert "\n" not in str(e.value)


def test_missing_file_and_not_an_index(tmp_path):
    docs = SparseEmbeddings.from_rows([([0], [1.0])], 4)
    SparseIndex.build(["a"], docs).save(tmp_path / "idx")
    (tmp_path / "idx" / "values.npy").unlink()
    with pytest.raises(IndexStoreError, match=r"^index file missing: .*values\.npy$"):
        SparseIndex.load(tmp_path / "idx")
    with pytest.raises(IndexStoreError, match="not an embedlab sparse index"):
        SparseIndex.load(tmp_path / "nothing")
    (tmp_path / "dense").mkdir()
    (tmp_path / "dense" / "manifest.json").write_text(json.dumps({"codec": "float32"}))
    with pytest.raises(IndexStoreError, match="not a sparse index manifest"):
        SparseIndex.load(tmp_path / "dense")


def test_info_hand_checked(tmp_path):
    # 3 documents over 10 dims: 2 + 0 + 3 = 5 stored weights
    docs = SparseEmbeddings.from_rows([([1, 4], [1.0, 2.0]), ([], []), ([0, 5, 9], [1.0, 1.0, 3.0])], 10)
    index = SparseIndex.build(["x", "y", "z"], docs, model_fingerprint="fp")
    info = index.info()
    assert info["documents"] == 3 and info["vocab_size"] == 10 and info["nnz"] == 5
    assert info["mean_active_dims"] == pytest.approx(5 / 3)
    assert info["model_fingerprint"] == "fp" and info["kind"] == "sparse"
    assert info["memory_bytes"] == 5 * 4 + 5 * index.matrix.indices.itemsize + 4 * index.matrix.indptr.itemsize
    assert info["disk_bytes"] is None  # never saved
    index.save(tmp_path / "idx")
    files = ["manifest.json", "indptr.npy", "indices.npy", "values.npy", "ids.json"]
    on_disk = sum((tmp_path / "idx" / f).stat().st_size for f in files)
    assert index.info()["disk_bytes"] == on_disk
    assert SparseIndex.load(tmp_path / "idx").info()["disk_bytes"] == on_disk
    # the npy files are their header plus the raw arrays: (4 + 5) int64 and 5 float32
    npy = sum((tmp_path / "idx" / f).stat().st_size for f in files[1:4])
    assert npy == 3 * 128 + (4 + 5) * 8 + 5 * 4
    index.delete(["y"])
    assert index.info()["disk_bytes"] is None and index.info()["mean_active_dims"] == 2.5
    np.testing.assert_array_equal(index.document("z").to_dense(), docs.take([2]).to_dense())
