"""The evaluation cache keys on the model's weight fingerprint and the content (prompt, precision, texts)
through the one cache key (:func:`embedlab.io.cache_key`): same weights from another path hit, a single
changed weight or another prompt misses."""

from __future__ import annotations

import shutil

import pytest
import torch

from embedlab.eval.runner import EmbeddingCache, make_encoder
from embedlab.io import cache_key
from embedlab.models import Embedder

TEXTS = ["the cat sat on the mat", "a dog ran fast", "the sky is blue", "the cat sat on the mat"]


def test_cache_key_is_deterministic_and_separates_its_parts():
    assert cache_key("fp", "a", ["b", "c"]) == cache_key("fp", "a", ["b", "c"])
    assert len(cache_key("fp")) == 32
    variants = [
        cache_key("fp", "ab"),
        cache_key("fp", "a", "b"),
        cache_key("fp", ["a", "b"]),
        cache_key("fpa", "b"),
        cache_key("fp", b"ab"),
        cache_key("fp", {"x": 1}),
        cache_key("fp", {"x": "1"}),
        cache_key("other", "ab"),
    ]
    assert len(set(variants)) == len(variants)
    assert cache_key("fp", {"a": 1, "b": 2}) == cache_key("fp", {"b": 2, "a": 1})
    with pytest.raises(TypeError):
        cache_key("fp", object())


def _encoder(emb, cache, counts, **kw):
    return make_encoder(emb, prompts={"query": None}, dtype="fp32", cache=cache, on_encode=counts.append, **kw)


def test_same_weights_from_another_path_hit_a_changed_weight_or_prompt_misses(tiny_bert, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    counts: list[int] = []
    emb = Embedder.from_pretrained(str(tiny_bert))
    first = _encoder(emb, cache, counts)(TEXTS, "query")
    assert counts == [3]  # the three distinct texts

    moved = shutil.copytree(tiny_bert, tmp_path / "elsewhere")
    other = Embedder.from_pretrained(str(moved))
    assert other.fingerprint() == emb.fingerprint()
    assert (_encoder(other, cache, counts)(TEXTS, "query") == first).all()
    assert counts == [3]  # served from the cache

    _encoder(other, cache, counts, raw_prompts={"query": "query: "})(TEXTS, "query")
    assert counts == [3, 3]  # another prompt: a miss
    _encoder(other, cache, counts)(TEXTS[:2], "query")
    assert counts == [3, 3, 2]  # other texts: a miss

    changed = Embedder.from_pretrained(str(moved))
    with torch.no_grad():
        changed.source.model.encoder.layer[0].attention.self.query.weight[0, 0] += 1e-3  # one weight
    assert changed.fingerprint() != emb.fingerprint()
    _encoder(changed, cache, counts)(TEXTS, "query")
    assert counts == [3, 3, 2, 3]  # a single changed weight: a miss
    assert cache.path(changed.fingerprint(), "", "fp32", TEXTS[:3]) != cache.path(
        emb.fingerprint(), "", "fp32", TEXTS[:3]
    )


def test_entries_of_the_old_layout_miss(tiny_bert, tmp_path):
    """A file under the model's folder with any other name (the pre-cache_key layout) is never read."""
    cache = EmbeddingCache(tmp_path / "cache")
    emb = Embedder.from_pretrained(str(tiny_bert))
    folder = tmp_path / "cache" / emb.fingerprint()
    folder.mkdir(parents=True)
    import hashlib

    import numpy as np

    h = hashlib.sha256(b"\x00fp32\x00")  # the old recipe: prompt, dtype, then each text's digest
    for t in TEXTS[:3]:
        h.update(hashlib.sha256(t.encode()).digest())
    np.save(folder / f"{h.hexdigest()[:32]}.npy", np.zeros((3, emb.output_dim), dtype=np.float32))
    counts: list[int] = []
    got = _encoder(emb, cache, counts)(TEXTS, "query")
    assert counts == [3] and np.abs(got).sum() > 0
