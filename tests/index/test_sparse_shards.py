"""Sparse shards (issue 24): embed-corpus with a sparse (SPLADE) model writes exactly the rows of
``encode(output="sparse")``; the manifest records kind and vocab_size; --resume rewrites a deleted shard
identically; lower precisions, int8 and ONNX are refused; the dense readers and index refuse sparse shards;
dense shards keep their format. (The Ray backend: tests/index/test_ray_embed.py.)"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from embedlab.errors import ConfigError
from embedlab.index.corpus_embed import embed_corpus, read_corpora
from embedlab.index.shards import EmbeddingShards, ShardError, build_index_from_shards, read_manifest
from embedlab.io import file_sha256

from ..conftest import run_cli
from .test_shards import _write_corpus

ROWS = 60  # 230 rows -> 4 shards


@pytest.fixture(scope="module")
def semb(tiny_splade):
    from embedlab.models import Embedder

    return Embedder.from_pretrained(tiny_splade)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _write_corpus(tmp_path_factory.mktemp("sc") / "corpus.jsonl")


@pytest.fixture(scope="module")
def reference(semb, corpus):
    """The corpus encoded directly, ROWS texts a call as the shards are (so the batches, and the float
    rounding, are the same: the rows must match bit for bit)."""
    from embedlab.vectors import concat

    c = read_corpora([corpus])
    parts = [semb.encode(c.texts[lo : lo + ROWS], output="sparse") for lo in range(0, len(c), ROWS)]
    return c.ids, c.texts, concat(parts)


def assert_close_rows(got, ref):
    """Same rows up to float rounding (other batches): the (n, V) matrices agree to 1e-6."""
    np.testing.assert_allclose(got.to_dense(), ref.to_dense(), rtol=1e-5, atol=1e-6)


def assert_same_rows(got, ref):
    """Two SparseEmbeddings hold the same rows: identical CSR arrays (indices, weights bit for bit)."""
    a, b = got.to_arrays(), ref.to_arrays()
    assert int(a["vocab_size"]) == int(b["vocab_size"])
    for key in ("indptr", "indices", "values"):
        assert a[key].shape == b[key].shape, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_local_sparse_shards_hold_encode_rows(tmp_path, tiny_splade, semb, corpus, reference):
    out = tmp_path / "s"
    manifest = embed_corpus(str(tiny_splade), [corpus], out, shard_rows=ROWS, embedder=semb)
    ids, texts, ref = reference
    assert manifest["complete"] and manifest["kind"] == "sparse" and manifest["num_shards"] == 4
    assert manifest["vocab_size"] == ref.vocab_size == semb.output_dim
    assert manifest["precision"] == "float32"
    on_disk = read_manifest(out)
    for entry in on_disk["shards"]:  # checksums as for dense shards
        assert file_sha256(out / entry["name"]) == entry["sha256"]
    table = pq.read_table(out / "shard-00000.parquet")
    assert set(table.column_names) == {"id", "indices", "values", "text"}
    shards = EmbeddingShards(out)
    assert shards.kind == "sparse" and shards.vocab_size == ref.vocab_size
    got_ids, rows, got_texts = shards.read_sparse()
    assert got_ids == ids and got_texts == texts
    assert_same_rows(rows, ref)
    # shard by shard too: shard k holds rows [k*ROWS, (k+1)*ROWS)
    for k, (sids, srows, _) in enumerate(shards.iter_sparse(texts=False)):
        lo = k * ROWS
        assert sids == ids[lo : lo + len(sids)]
        assert_same_rows(srows, ref.take(np.arange(lo, lo + len(sids))))
    # the whole corpus in one call (other batches): equal up to float rounding
    assert_close_rows(rows, semb.encode(texts, output="sparse"))
    assert (np.diff(ref.indptr) > 0).all()  # the model gives non-empty rows: the comparison is not vacuous


def test_resume_rewrites_a_deleted_shard_identically(tmp_path, tiny_splade, semb, corpus, reference):
    out = tmp_path / "s"
    embed_corpus(str(tiny_splade), [corpus], out, shard_rows=ROWS, embedder=semb)
    before = {e["name"]: e["sha256"] for e in read_manifest(out)["shards"]}
    (out / "shard-00002.parquet").unlink()
    with pytest.raises(ShardError, match="shard missing"):
        EmbeddingShards(out).read_sparse()
    calls = []
    real = type(semb).encode

    def counting(self, texts, **kw):
        calls.append((len(texts), kw.get("output")))
        return real(self, texts, **kw)

    type(semb).encode = counting
    try:
        manifest = embed_corpus(str(tiny_splade), [corpus], out, shard_rows=ROWS, embedder=semb, resume=True)
    finally:
        type(semb).encode = real
    assert calls == [(ROWS, "sparse")]  # only the deleted shard was re-encoded
    assert manifest["run"]["reused_shards"] == 3
    after = {e["name"]: e["sha256"] for e in read_manifest(out)["shards"]}
    assert after == before  # the rewritten file is byte-identical
    assert_same_rows(EmbeddingShards(out).read_sparse()[1], reference[2])


def test_resume_refuses_dense_over_sparse(tmp_path, tiny_bert, tiny_splade, semb, corpus):
    from embedlab.models import Embedder

    out = tmp_path / "s"
    embed_corpus(str(tiny_splade), [corpus], out, shard_rows=ROWS, embedder=semb)
    dense = Embedder.from_pretrained(tiny_bert)
    with pytest.raises(ConfigError, match="cannot resume .*kind was 'sparse', now 'dense'"):
        embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=dense, resume=True)


@pytest.mark.parametrize("precision", ["int8", "float16", "binary"])
def test_lower_precisions_are_refused_for_sparse(tmp_path, tiny_splade, semb, corpus, precision):
    out = tmp_path / "s"
    with pytest.raises(ConfigError, match=f"--precision {precision} applies to dense vectors") as info:
        embed_corpus(str(tiny_splade), [corpus], out, shard_rows=ROWS, embedder=semb, precision=precision)
    assert "\n" not in str(info.value)
    assert not out.exists()  # refused before anything is written


def test_onnx_and_int8_dtype_are_refused_for_sparse(tmp_path, tiny_splade, semb, corpus):
    with pytest.raises(ConfigError, match="--runtime torch"):
        embed_corpus(str(tiny_splade), [corpus], tmp_path / "a", embedder=semb, runtime="onnx")
    with pytest.raises(ConfigError, match="int8 is for dense backbones"):
        embed_corpus(str(tiny_splade), [corpus], tmp_path / "b", embedder=semb, dtype="int8")


def test_dense_readers_and_index_refuse_sparse_shards(tmp_path, tiny_splade, semb, corpus):
    out = tmp_path / "s"
    embed_corpus(str(tiny_splade), [corpus], out, shard_rows=ROWS, embedder=semb)
    with pytest.raises(ShardError, match="holds sparse shards") as info:
        EmbeddingShards(out).read_all()
    assert "\n" not in str(info.value)
    loads = []
    with pytest.raises(ShardError, match="a dense index cannot be built from them"):
        build_index_from_shards(out, "float32", load_model=lambda *a: loads.append(a))
    assert not loads  # refused before any model loads


def test_dense_shards_keep_their_format(tmp_path, tiny_bert, corpus):
    from embedlab.models import Embedder

    out = tmp_path / "d"
    manifest = embed_corpus(
        str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=Embedder.from_pretrained(tiny_bert)
    )
    assert "kind" not in manifest and "vocab_size" not in manifest
    assert set(pq.read_table(out / "shard-00000.parquet").column_names) == {"id", "vector", "text"}
    shards = EmbeddingShards(out)
    assert shards.kind == "dense" and shards.vocab_size is None
    with pytest.raises(ShardError, match="holds dense shards"):
        next(shards.iter_sparse())


def test_cli_sparse_embed_corpus_and_refusals(tmp_path, tiny_splade, corpus, reference, monkeypatch, capsys):
    out = tmp_path / "s"
    code, _, err = run_cli(
        monkeypatch, capsys, "embed-corpus", tiny_splade, "--corpus", corpus, "--out", out,
        "--shard-rows", 100,
    )  # fmt: skip
    assert code == 0, err
    assert "embedded 230 of 230 documents into 3 shard(s)" in err
    assert_close_rows(EmbeddingShards(out).read_sparse()[1], reference[2])
    code, _, err = run_cli(
        monkeypatch, capsys, "embed-corpus", tiny_splade, "--corpus", corpus,
        "--out", tmp_path / "q", "--precision", "int8",
    )  # fmt: skip
    assert code != 0 and "--precision int8 applies to dense vectors" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run_cli(
        monkeypatch, capsys, "index", "build", "--from-embeddings", out, "--codec", "float32", "--out", tmp_path / "i"
    )
    assert code != 0 and "holds sparse shards" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "i" / "manifest.json").exists()
