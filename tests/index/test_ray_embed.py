"""The Ray backend on a local 2-CPU runtime (one per module): identical vectors to the local backend,
resume across backends, a killed actor, an unreachable address."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from embedlab.errors import ConfigError  # noqa: E402
from embedlab.index.corpus_embed import embed_corpus, read_corpora  # noqa: E402
from embedlab.index.ray_embed import WORKER_ENV, EmbedActor, check_reachable  # noqa: E402
from embedlab.index.shards import EmbeddingShards, read_manifest, write_manifest  # noqa: E402

from .test_shards import _write_corpus  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def ray_runtime():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        log_to_driver=False,
        runtime_env={"env_vars": {**WORKER_ENV, "PYTHONPATH": os.pathsep.join(sys.path)}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def emb(tiny_bert):
    from embedlab.models import Embedder

    return Embedder.from_pretrained(tiny_bert)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("rc")
    return [_write_corpus(d / "a.jsonl.gz", n=150, beir=True), _write_corpus(d / "b.jsonl", n=70, start=500)]


@pytest.fixture(scope="module")
def local_ref(tmp_path_factory, tiny_bert, emb, files):
    out = tmp_path_factory.mktemp("loc") / "s"
    embed_corpus(str(tiny_bert), files, out, shard_rows=50, embedder=emb)
    return EmbeddingShards(out).read_all()


def _same(a, b):
    assert a[0] == b[0] and a[2] == b[2]
    cos = (a[1] * b[1]).sum(1) / np.linalg.norm(a[1], axis=1) / np.linalg.norm(b[1], axis=1)
    assert cos.min() >= 0.99999, cos.min()


@pytest.mark.parametrize("actors", [1, 2])
def test_ray_equals_local(tmp_path, tiny_bert, files, local_ref, actors):
    out = tmp_path / "s"
    manifest = embed_corpus(str(tiny_bert), files, out, shard_rows=50, backend="ray", actors=actors, batch_rows=32)
    assert manifest["complete"] and manifest["backend"] == "ray" and manifest["num_shards"] == 5
    got = EmbeddingShards(out).read_all()
    assert len(set(got[0])) == 220
    _same(got, local_ref)


def test_ray_resumes_a_local_job(tmp_path, tiny_bert, emb, files, local_ref):
    out = tmp_path / "s"
    embed_corpus(str(tiny_bert), files, out, shard_rows=50, embedder=emb)
    manifest = read_manifest(out)
    manifest["shards"] = [s for s in manifest["shards"] if s["index"] not in (1, 3)]  # as if killed mid-job
    manifest["complete"] = False
    write_manifest(out, manifest)
    (out / "shard-00003.parquet").unlink()
    embed_corpus(str(tiny_bert), files, out, shard_rows=50, backend="ray", actors=2, batch_rows=16, resume=True)
    _same(EmbeddingShards(out).read_all(), local_ref)


class DiesOnce(EmbedActor):
    """An actor whose process exits (as if killed) on its second batch, once per marker file."""

    def __init__(self, marker: str, **kw):
        super().__init__(**kw)
        self.marker_path, self.calls = marker, 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 2 and not os.path.exists(self.marker_path):
            open(self.marker_path, "w").close()
            os._exit(1)
        return super().__call__(batch)


def test_killed_actor_is_retried(tmp_path, tiny_bert, files, local_ref):
    from ray import cloudpickle

    from embedlab.index import ray_embed

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "killed"
    out = tmp_path / "s"
    real = ray_embed.build_dataset

    def with_marker(corpus_files, keep, actors, batch_rows, actor_cls, actor_kwargs):
        return real(corpus_files, keep, actors, batch_rows, actor_cls, {**actor_kwargs, "marker": str(marker)})

    ray_embed.build_dataset = with_marker
    try:
        embed_corpus(
            str(tiny_bert), files, out, shard_rows=50, backend="ray", actors=2, batch_rows=16, actor_cls=DiesOnce
        )
    finally:
        ray_embed.build_dataset = real
    assert marker.exists()  # an actor did die
    got = EmbeddingShards(out).read_all()
    assert sorted(got[0]) == sorted(set(got[0])) and len(got[0]) == 220  # no duplicate or missing ids
    _same(got, local_ref)


def test_unreachable_address_fails_fast_and_names_it(tmp_path, tiny_bert, emb, files):
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        check_reachable("127.0.0.1:1", timeout=2)
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster at ray://127.0.0.1:1"):
        embed_corpus(
            str(tiny_bert), files, tmp_path / "s", backend="ray", ray_address="ray://127.0.0.1:1", embedder=emb
        )
    with pytest.raises(ConfigError, match="not host:port"):
        check_reachable("nonsense")


def test_wrong_model_on_workers_is_one_error(tmp_path, tiny_bert, files):
    from embedlab.index import ray_embed

    with pytest.raises(ConfigError, match="every node must see the same model files"):
        ray_embed.run_ray(
            str(tiny_bert),
            read_corpora(files),
            [0],
            shard_rows=50,
            dim=32,
            on_shard=lambda *a: None,
            on_rows=lambda n: None,
            address=None,
            actors=1,
            batch_rows=50,
            actor_kwargs={
                "model": str(tiny_bert),
                "pooling": None,
                "attention": None,
                "fingerprint": "0" * 16,
                "prompt": None,
                "dtype": "fp32",
                "token_budget": None,
            },
        )


def test_ray_with_the_onnx_runtime_equals_local_torch(tmp_path, tiny_bert, files, local_ref):
    """The driver exports the graph once; the actors load it from the cache and embed the same vectors."""
    out = tmp_path / "s"
    manifest = embed_corpus(
        str(tiny_bert), files, out, shard_rows=50, backend="ray", actors=1, batch_rows=64, runtime="onnx"
    )
    assert manifest["complete"] and manifest["runtime"] == "onnx"
    _same(EmbeddingShards(out).read_all(), local_ref)


def test_mixed_id_and_title_rows_give_the_same_text_and_vectors_on_both_backends(tmp_path, tiny_bert, emb):
    """Issue 22.11: the first row has no title and an ``id``; later rows use ``_id`` and titles. Ray used to
    decide the columns from the first row (dropping every title, crashing on ``_id``)."""
    import json

    rows = [{"id": "a0", "text": "the cat sat"}]
    rows += [{"_id": f"b{i}", "title": "red car" if i % 2 else "", "text": "the dog ran fast"} for i in range(30)]
    rows += [{"id": i, "title": "blue sky", "text": "a bird is in the tree"} for i in range(30)]
    f = tmp_path / "mixed.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = ["the cat sat"] + [("red car " if i % 2 else "") + "the dog ran fast" for i in range(30)]
    expected += ["blue sky a bird is in the tree"] * 30  # the rule, written out by hand
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    embed_corpus(str(tiny_bert), [f], local, shard_rows=25, embedder=emb)
    embed_corpus(str(tiny_bert), [f], on_ray, shard_rows=25, backend="ray", actors=1, batch_rows=16)
    a, b = EmbeddingShards(local).read_all(), EmbeddingShards(on_ray).read_all()
    assert a[2] == b[2] == expected
    assert a[0] == b[0] == ["a0"] + [f"b{i}" for i in range(30)] + [str(i) for i in range(30)]
    direct = emb.encode(expected)  # the vectors of the stored text, encoded directly
    _same(a, b)
    _same(b, (b[0], direct, b[2]))


def test_int8_on_ray_uses_the_directory_ranges(tmp_path, tiny_bert, emb, files):
    """int8 shards written by Ray use the one set of ranges in the manifest: a local int8 job finished on
    Ray keeps its ranges, and a fresh Ray job calibrates the same ones and decodes to the local vectors."""
    from embedlab.vectors import Int8Ranges

    local = tmp_path / "local"
    m = embed_corpus(str(tiny_bert), files, local, shard_rows=50, embedder=emb, precision="int8")
    ref = EmbeddingShards(local).read_all()
    for e in m["shards"][1:3]:
        (local / e["name"]).unlink()
    again = embed_corpus(
        str(tiny_bert),
        files,
        local,
        shard_rows=50,
        backend="ray",
        actors=1,
        batch_rows=32,
        precision="int8",
        resume=True,
    )
    assert again["int8_ranges"] == m["int8_ranges"] and again["run"]["shards"] == 2
    ranges = Int8Ranges.from_dict(m["int8_ranges"])
    step = float(ranges.diff.max()) / 255
    resumed = EmbeddingShards(local).read_all()
    assert resumed[0] == ref[0] and np.abs(resumed[1] - ref[1]).max() <= step + 1e-6
    fresh = embed_corpus(
        str(tiny_bert), files, tmp_path / "ray", shard_rows=50, backend="ray", actors=1, batch_rows=32, precision="int8"
    )
    np.testing.assert_allclose(Int8Ranges.from_dict(fresh["int8_ranges"]).lo, ranges.lo, atol=1e-5)
    on_ray = EmbeddingShards(tmp_path / "ray").read_all()
    assert on_ray[0] == ref[0] and np.abs(on_ray[1] - ref[1]).max() <= step + 1e-5


# -- sparse shards (issue 24) ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def semb(tiny_splade):
    from embedlab.models import Embedder

    return Embedder.from_pretrained(tiny_splade)


def _close_sparse(got, ref):
    """Same rows, up to the float rounding of other batches: the (n, V) matrices agree to 1e-6."""
    assert got.vocab_size == ref.vocab_size and len(got) == len(ref)
    np.testing.assert_allclose(got.to_dense(), ref.to_dense(), rtol=1e-5, atol=1e-6)


def test_ray_sparse_shards_hold_encode_rows(tmp_path, tiny_splade, semb, files):
    out = tmp_path / "s"
    manifest = embed_corpus(str(tiny_splade), files, out, shard_rows=50, backend="ray", actors=2, batch_rows=32)
    assert manifest["complete"] and manifest["kind"] == "sparse" and manifest["vocab_size"] == semb.output_dim
    corpus = read_corpora(files)
    ids, rows, texts = EmbeddingShards(out).read_sparse()
    assert ids == corpus.ids and texts == corpus.texts
    _close_sparse(rows, semb.encode(corpus.texts, output="sparse"))
    local = tmp_path / "local"
    embed_corpus(str(tiny_splade), files, local, shard_rows=50, embedder=semb)
    _close_sparse(rows, EmbeddingShards(local).read_sparse()[1])


def test_ray_resumes_a_local_sparse_job(tmp_path, tiny_splade, semb, files):
    out = tmp_path / "s"
    embed_corpus(str(tiny_splade), files, out, shard_rows=50, embedder=semb)
    before = EmbeddingShards(out).read_sparse()
    (out / "shard-00003.parquet").unlink()
    manifest = embed_corpus(str(tiny_splade), files, out, shard_rows=50, backend="ray", batch_rows=16, resume=True)
    assert manifest["run"]["shards"] == 1 and manifest["run"]["reused_shards"] == 4
    after = EmbeddingShards(out).read_sparse()
    assert after[0] == before[0] and after[2] == before[2]
    _close_sparse(after[1], before[1])
    with pytest.raises(ConfigError, match="--precision int8 applies to dense vectors"):
        embed_corpus(str(tiny_splade), files, tmp_path / "q", backend="ray", precision="int8")
