"""Embedder: save/load, sentence-transformers compatibility, prompts, truncation, padding, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embedlab.errors import EmbedlabError, InputError, PoolingError
from embedlab.models import Embedder

TEXTS = [
    "the cat sat on the mat",
    "a dog ran",
    "why is the sky blue",
    "read",
    "the big red car and the small blue house",
]
TRAINABLE = {"latent_attention": {"num_latents": 4, "num_heads": 2}, "multi_layer": {"num_latents": 4, "num_heads": 2}}


DECODER_HEADS = [
    ("llama", "last_token"),
    ("llama", "mean"),
    ("llama", "weighted_mean"),
    ("llama", "latent_attention"),
    ("llama", "multi_layer"),
    ("qwen3", "multi_layer"),
]


@pytest.mark.parametrize(
    "family,pooling,attention",
    [("bert", "cls", None), ("bert", "mean", None)]
    + [(f, p, a) for f, p in DECODER_HEADS for a in ("causal", "bidirectional")],
)
def test_save_load_is_exact(tiny_models, tmp_path, family, pooling, attention):
    emb = Embedder.from_pretrained(
        tiny_models[family],
        pooling=pooling,
        attention=attention,
        pooling_options=TRAINABLE.get(pooling),
        prompts={"query": "query :", "document": ""},
    )
    before = emb.encode(TEXTS, prompt_name="query")
    emb.save(tmp_path / "e")
    for name in (
        "modules.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
        "2_Normalize/config.json",
        "embedlab.json",
    ):
        assert (tmp_path / "e" / name).is_file(), name
    again = Embedder.from_pretrained(tmp_path / "e")
    assert (
        again.head.name == pooling
        and again.attention == emb.attention
        and again.prompts == {"query": "query :", "document": ""}
    )
    np.testing.assert_array_equal(again.encode(TEXTS, prompt_name="query"), before)
    assert again.fingerprint() == emb.fingerprint()


@pytest.mark.parametrize(
    "family,pooling",
    [("bert", "cls"), ("bert", "mean"), ("bert", "weighted_mean"), ("llama", "last_token"), ("qwen2", "mean")],
)
def test_plain_pooling_loads_in_sentence_transformers(tiny_models, tmp_path, family, pooling):
    from sentence_transformers import SentenceTransformer

    # sentence-transformers 6.2 measures its default empty "document" prompt and fails on tokenizers that add
    # no special tokens (decoders), so prompts are exercised on the encoder only
    prompt = {"query": "query :"} if family == "bert" else {}
    emb = Embedder.from_pretrained(tiny_models[family], pooling=pooling, append_eos=False, prompts=prompt)
    emb.save(tmp_path / "e")
    st = SentenceTransformer(str(tmp_path / "e"), device="cpu")
    name = "query" if prompt else None
    ours = emb.encode(TEXTS, prompt_name=name)
    theirs = st.encode(TEXTS, prompt_name=name, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    assert st.max_seq_length == emb.max_length


def test_minilm_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from embedlab.models.aliases import ALIASES

    emb = Embedder.from_pretrained("minilm-l6")
    assert (emb.head.name, emb.normalize, emb.max_length) == ("mean", True, 256)
    st = SentenceTransformer(str(ALIASES["minilm-l6"].locate()), device="cpu")
    texts = TEXTS + ["", "An unusually long sentence " * 80]
    np.testing.assert_allclose(emb.encode(texts), st.encode(texts), atol=1e-5)
    assert emb.last_stats.truncated == 1


def test_exclude_instruction_pools_only_the_text(tiny_llama):
    emb = Embedder.from_pretrained(
        tiny_llama, pooling="mean", pooling_options={"exclude_instruction": True}, normalize=False
    )
    prompt = "instruct find similar text :"
    got = emb.encode(["the cat sat"], prompt=prompt)[0]
    tok = emb.tokenizer
    ids = tok(prompt + "the cat sat")["input_ids"]
    n_prompt = len(tok(prompt)["input_ids"])
    with torch.no_grad():
        states = emb.backbone(
            {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        )["token_embeddings"][0]
    np.testing.assert_allclose(got, states[n_prompt:].mean(0).numpy(), atol=1e-5)
    plain = Embedder.from_pretrained(tiny_llama, pooling="mean", normalize=False).encode(
        ["the cat sat"], prompt=prompt
    )[0]
    assert not np.allclose(plain, got)


def test_matryoshka_dim_truncates_then_normalises(tiny_llama):
    full = Embedder.from_pretrained(tiny_llama, pooling="mean", normalize=False).encode(TEXTS)
    cut = Embedder.from_pretrained(tiny_llama, pooling="mean", dim=8).encode(TEXTS)
    assert cut.shape == (len(TEXTS), 8)
    np.testing.assert_allclose(cut, full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(EmbedlabError, match="dim"):
        Embedder.from_pretrained(tiny_llama, dim=1000)


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
@pytest.mark.parametrize("pooling", ["last_token", "mean", "weighted_mean", "multi_layer"])
def test_padding_side_and_batching_do_not_change_vectors(tiny_llama, attention, pooling):
    kw = dict(pooling=pooling, attention=attention, pooling_options=TRAINABLE.get(pooling))
    torch.manual_seed(0)
    right = Embedder.from_pretrained(tiny_llama, padding_side="right", **kw)
    left = Embedder.from_pretrained(tiny_llama, padding_side="left", **kw)
    left.head.load_state_dict(right.head.state_dict())
    a, b = right.encode(TEXTS), left.encode(TEXTS)
    one_by_one = np.stack([right.encode(t) for t in TEXTS])
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, one_by_one, atol=1e-5)
    tiny_batches = right.encode(TEXTS, token_budget=8, max_batch_size=2)
    np.testing.assert_allclose(a, tiny_batches, atol=1e-5)


def test_append_eos_and_truncation(tiny_llama):
    emb = Embedder.from_pretrained(tiny_llama, max_length=6)
    assert emb.head.name == "last_token" and emb.append_eos  # the headline paper's default for decoders
    tokenized = emb.tokenize(["the cat sat on the mat and the dog", "a dog"])
    ids, truncated = tokenized.ids, tokenized.truncated
    eos = emb.tokenizer.eos_token_id
    assert [len(s) for s in ids] == [6, 3] and ids[0][-1] == eos and ids[1][-1] == eos and truncated == 1
    emb.encode(["the cat sat on the mat and the dog", "a dog"])
    assert emb.last_stats.truncated == 1 and emb.last_stats.texts == 2


def test_empty_and_wrong_inputs(tiny_llama, tiny_bert):
    bert = Embedder.from_pretrained(tiny_bert)
    assert bert.encode(["", "the cat"]).shape == (2, 32)  # [CLS] [SEP], as the model would
    dec = Embedder.from_pretrained(tiny_llama, pooling="mean", append_eos=False)
    with pytest.raises(InputError, match="text 1 gives no tokens"):
        dec.encode(["the cat", ""])
    assert Embedder.from_pretrained(tiny_llama).encode([""]).shape == (1, 32)  # EOS appended
    with pytest.raises(InputError, match="text 1 is int"):
        bert.encode(["a", 3])
    with pytest.raises(InputError):
        bert.encode(42)
    assert bert.encode([]).shape == (0, 32)
    assert bert.encode("the cat").shape == (32,)
    with pytest.raises(EmbedlabError, match="unknown prompt"):
        bert.encode(["a"], prompt_name="query")
    with pytest.raises(EmbedlabError, match="dtype"):
        bert.encode(["a"], dtype="int4")


def test_cls_on_decoder_is_rejected(tiny_llama):
    with pytest.raises(PoolingError, match="decoder"):
        Embedder.from_pretrained(tiny_llama, pooling="cls")


def test_nan_weights_are_reported(tiny_bert):
    emb = Embedder.from_pretrained(tiny_bert)
    with torch.no_grad():
        emb.backbone.model.embeddings.word_embeddings.weight[:] = float("nan")
    with pytest.raises(EmbedlabError, match="NaN"):
        emb.encode(["the cat"])


def test_bf16_is_close_to_fp32(tiny_llama):
    emb = Embedder.from_pretrained(tiny_llama, pooling="mean")
    a, b = emb.encode(TEXTS), emb.encode(TEXTS, dtype="bf16")
    assert (a * b).sum(1).min() > 0.99
    assert emb.backbone.config._attn_implementation == "sdpa"  # the bf16 kernel switch is undone


def test_saved_settings_are_defaults_and_overridable(tiny_llama, tmp_path):
    emb = Embedder.from_pretrained(
        tiny_llama, pooling="weighted_mean", dim=16, prompts={"query": "query :"}, default_prompt_name="query"
    )
    emb.save(tmp_path / "e")
    cfg = json.loads((tmp_path / "e" / "embedlab.json").read_text())
    assert cfg["truncate_dim"] == 16 and cfg["pooling"] == "weighted_mean"
    assert [m["type"] for m in json.loads((tmp_path / "e" / "modules.json").read_text())][1:] == [
        "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
        "embedlab.truncate",
        "sentence_transformers.base.modules.normalize.Normalize",
    ]
    again = Embedder.from_pretrained(tmp_path / "e")
    assert (again.truncate_dim, again.default_prompt_name, again.head.name) == (16, "query", "weighted_mean")
    np.testing.assert_array_equal(again.encode(TEXTS), emb.encode(TEXTS))
    other = Embedder.from_pretrained(tmp_path / "e", pooling="mean")
    assert other.head.name == "mean"


def test_save_is_atomic_on_failure(tiny_bert, tmp_path, monkeypatch):
    emb = Embedder.from_pretrained(tiny_bert)
    emb.save(tmp_path / "e")
    before = sorted(p.name for p in (tmp_path / "e").iterdir())

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(emb.head, "save", boom)
    with pytest.raises(RuntimeError):
        emb.save(tmp_path / "e")
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["e"]  # no temp debris
    Embedder.from_pretrained(tmp_path / "e")


def test_a_loaded_model_is_in_inference_mode_before_and_after_encode(tiny_bert):
    """Dropout must be off for a user calling the chain directly, as after transformers' from_pretrained."""
    emb = Embedder.from_pretrained(str(tiny_bert))
    assert not any(m.training for m in emb.modules())
    emb.encode(["a sentence"])
    assert not any(m.training for m in emb.modules())
