"""The embedder as a chain of modules: every registered module round-trips its config and outputs,
sentence-transformers loads the chains it knows, adjacent modules are checked once, and the
fingerprint follows the weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embedlab.errors import ConfigError, PoolingError
from embedlab.models import REGISTRY, Embedder, Normalize, Projection, Truncate
from embedlab.models.pooling import POOLING_HEADS, build_head

TEXTS = ["the cat sat on the mat", "a dog ran", "why is the sky blue", "read"]
D = 32


def _example(kind: str):
    """One instance of each registered module kind (pooling: every head), with random weights."""
    if kind == "pooling":
        return [
            build_head(n, D, num_layers=2, **({"num_latents": 3, "num_heads": 2} if POOLING_HEADS[n].trainable else {}))
            for n in POOLING_HEADS
            if POOLING_HEADS[n].kind == "pooling"  # a sparse head is its own kind (below)
        ]
    if kind == "projection":
        p = Projection(D, 16)
        return [p]
    if kind == "truncate":
        return [Truncate(8)]
    if kind == "normalize":
        return [Normalize()]
    if kind == "debias":  # embedlab.models.debias (issue 12)
        from embedlab.models.debias import DebiasProjection

        return [DebiasProjection(np.linalg.qr(np.random.default_rng(0).normal(size=(D, 2)))[0].T, {"pairs": 10})]
    return []


@pytest.mark.parametrize(
    "kind", sorted(k for k in REGISTRY if not getattr(REGISTRY[k], "is_source", False))
)  # sources load by from_source
def test_every_registered_module_round_trips(kind, tmp_path):
    if kind in ("splade", "dupmae"):
        pytest.skip("bound to a backbone's MLM head: its save/load round trip is in tests/models/test_sparse.py")
    modules = _example(kind)
    assert modules, f"no example for registered module kind {kind!r}: add one here"
    torch.manual_seed(0)
    feats = {
        "token_embeddings": torch.randn(3, 5, D),
        "attention_mask": torch.ones(3, 5, dtype=torch.long),
        "pool_mask": torch.ones(3, 5, dtype=torch.long),
        "hidden_states": tuple(torch.randn(3, 5, D) for _ in range(2)),
        "sentence_embedding": torch.randn(3, D),
    }
    for i, module in enumerate(modules):
        module.save(tmp_path / f"m{i}")
        again = type(module).load(tmp_path / f"m{i}")
        assert type(again) is type(module) and again.get_config() == module.get_config()
        a = module(dict(feats))["sentence_embedding"]
        b = again(dict(feats))["sentence_embedding"]
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_projection_chain_loads_in_sentence_transformers(tiny_bert, tmp_path):
    from sentence_transformers import SentenceTransformer

    base = Embedder.from_pretrained(tiny_bert, pooling="mean")
    torch.manual_seed(1)
    emb = Embedder.build(base.source, base.head, projection=Projection(D, 12))
    emb.save(tmp_path / "e")
    types = [m["type"] for m in json.loads((tmp_path / "e" / "modules.json").read_text())]
    assert types[2] == "sentence_transformers.base.modules.dense.Dense"
    st = SentenceTransformer(str(tmp_path / "e"), device="cpu")
    np.testing.assert_allclose(emb.encode(TEXTS), st.encode(TEXTS, convert_to_numpy=True), atol=2e-5)
    again = Embedder.from_pretrained(tmp_path / "e")
    assert [m.kind for m in again.chain] == ["transformer", "pooling", "projection", "normalize"]
    np.testing.assert_array_equal(again.encode(TEXTS), emb.encode(TEXTS))


def test_identity_projection_leaves_vectors_unchanged(tiny_bert):
    base = Embedder.from_pretrained(tiny_bert, pooling="mean")
    proj = Embedder.build(base.source, base.head, projection=Projection(D, D, init="identity"))
    np.testing.assert_allclose(proj.encode(TEXTS), base.encode(TEXTS), atol=1e-6)
    with pytest.raises(ConfigError, match="identity"):
        Projection(D, 8, init="identity")


def test_adjacent_modules_are_checked_at_construction(tiny_llama, tiny_bert):
    base = Embedder.from_pretrained(tiny_bert, pooling="mean")
    with pytest.raises(ConfigError, match="projection expects 16-d"):
        Embedder([base.source, base.head, Projection(16, 8)])
    with pytest.raises(ConfigError, match="truncate_dim must be an integer in 1..12"):
        Embedder([base.source, base.head, Projection(D, 12), Truncate(20)])
    with pytest.raises(ConfigError, match="exactly one pooling head"):
        Embedder([base.source, Normalize(), base.head])
    with pytest.raises(PoolingError, match="expects 16-d states"):
        Embedder([base.source, build_head("mean", 16)])
    dec = Embedder.from_pretrained(tiny_llama, pooling="mean")
    with pytest.raises(PoolingError, match="built for 5 layers"):
        Embedder([dec.source, build_head("multi_layer", D, num_layers=5)])


def test_unknown_module_type_on_disk_is_refused(tiny_bert, tmp_path):
    Embedder.from_pretrained(tiny_bert).save(tmp_path / "e")
    mods = json.loads((tmp_path / "e" / "modules.json").read_text())
    mods[1]["type"] = "os.system"  # a file on disk never chooses what gets imported
    (tmp_path / "e" / "modules.json").write_text(json.dumps(mods))
    with pytest.raises(ConfigError, match="'os.system'.*not supported"):
        Embedder.from_pretrained(tmp_path / "e")


def test_fingerprint_follows_in_place_weight_changes(tiny_bert):
    """The evaluation cache trusts the fingerprint: an in-place update (an optimizer step) must change it
    without anyone resetting a private field."""
    emb = Embedder.from_pretrained(tiny_bert, pooling="mean")
    first = emb.fingerprint()
    assert emb.fingerprint() == first
    with torch.no_grad():
        emb.source.model.embeddings.word_embeddings.weight[3, 0] += 1.0
    second = emb.fingerprint()
    assert second != first
    opt = torch.optim.SGD(emb.source.model.parameters(), lr=0.1)
    emb.encode(["warm"])
    loss = emb(emb.batch_features([[2, 7, 3]]))["sentence_embedding"].sum()
    loss.backward()
    opt.step()
    assert emb.fingerprint() != second
    other = Embedder.from_pretrained(tiny_bert, pooling="mean")
    assert other.fingerprint() == first  # same weights and config, same fingerprint


def test_with_options_returns_a_new_validated_embedder(tiny_llama):
    emb = Embedder.from_pretrained(tiny_llama, pooling="mean", append_eos=False)
    eos = emb.with_options(append_eos=True)
    assert eos.append_eos and not emb.append_eos and eos.head is emb.head
    assert eos.tokenize(["a dog"]).ids[0][-1] == emb.tokenizer.eos_token_id
    with pytest.raises(ConfigError, match="padding_side"):
        emb.with_options(padding_side="middle")
