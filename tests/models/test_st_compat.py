"""sentence-transformers compatibility of prompts: how it counts a prompt's tokens (hand-checked), the
warning at save when that differs from embedlab's count in context, and the round trip through
``SentenceTransformer(path)`` with a prompt on both packaged tokenizers (their real tokenizers, tiny
random weights)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import embedlab
from embedlab.models import st_compat
from tests.conftest import cosines

PROMPT = "Instruct: Retrieve relevant passages\nQuery: "  # the README's query prompt
QUERIES = ["what is a transformer?", "how do cats sleep", "Best pizza in Naples", "why is the sky blue"]


def _tiny_with_tokenizer(tokenizer, path, decoder: bool):
    """A 2-layer, 32-wide random model over ``tokenizer``'s whole vocabulary, saved in HF layout."""
    import torch
    import transformers as t

    torch.manual_seed(0)
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 512,
    }
    config = (
        t.LlamaConfig(
            **common,
            num_key_value_heads=2,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
        if decoder
        else t.BertConfig(**common, pad_token_id=tokenizer.pad_token_id)
    )
    t.AutoModel.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _save_quietly(emb, path) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb.save(path)
    return [str(w.message) for w in caught if "sentence-transformers counts" in str(w.message)]


def _round_trip(emb, path):
    """(embedlab's, sentence-transformers') vectors of QUERIES with the prompt named query."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(path), device="cpu")
    return emb.encode(QUERIES, prompt_name="query"), st.encode(QUERIES, prompt_name="query", normalize_embeddings=False)


# -- the counts, by hand -----------------------------------------------------------------------------
def test_st_prompt_length_drops_only_a_trailing_special_token(tiny_bert, tiny_llama):
    bert = embedlab.load(str(tiny_bert)).tokenizer
    llama = embedlab.load(str(tiny_llama)).tokenizer
    # [CLS] find similar [SEP] -> 3 (the [SEP] is not part of the prompt); the decoder adds no special token
    assert st_compat.st_prompt_length(bert, "find similar ") == 3
    assert st_compat.st_prompt_length(llama, "find similar ") == 2
    assert st_compat.in_context_prompt_length(bert, "find similar ", "cat") == 3
    assert st_compat.prompt_count_mismatches(bert, {"q": "find similar ", "empty": ""}) == []


def test_minilm_wordpiece_counts_agree_and_sentence_transformers_gives_embedlabs_vectors(tmp_path):
    """WordPiece drops whitespace: the prompt alone and in front of a text have the same tokens, so no
    warning and the round trip is exact."""
    from transformers import AutoTokenizer

    from embedlab.sources.aliases import ALIASES

    tokenizer = AutoTokenizer.from_pretrained(str(ALIASES["minilm-l6"].locate()))
    # by hand: [CLS] ins ##truct : retrieve relevant passages query : [SEP] -> 9 without the [SEP]
    assert tokenizer.convert_ids_to_tokens(tokenizer(PROMPT)["input_ids"]) == [
        "[CLS]",
        "ins",
        "##truct",
        ":",
        "retrieve",
        "relevant",
        "passages",
        "query",
        ":",
        "[SEP]",
    ]
    assert st_compat.st_prompt_length(tokenizer, PROMPT) == 9
    assert st_compat.in_context_prompt_length(tokenizer, PROMPT, "what is it") == 9
    assert st_compat.prompt_count_mismatches(tokenizer, {"query": PROMPT}) == []
    model = _tiny_with_tokenizer(tokenizer, tmp_path / "bert", decoder=False)
    emb = embedlab.load(
        str(model), pooling="mean", prompts={"query": PROMPT}, pooling_options={"exclude_instruction": True}
    )
    assert _save_quietly(emb, tmp_path / "saved") == []
    ours, theirs = _round_trip(emb, tmp_path / "saved")
    np.testing.assert_allclose(cosines(ours, theirs), 1.0, atol=1e-6)
    whole = emb.encode([PROMPT + q for q in QUERIES])
    assert cosines(ours, whole).max() < 0.9999  # the instruction really is left out, in both


@pytest.mark.slow
def test_smollm2_byte_level_bpe_warns_and_the_suggested_prompt_round_trips(tmp_path):
    """Byte-level BPE: "Query: " alone ends in a lone "Ġ" (11 tokens), which in front of a text merges into
    the text's first word (10). save() warns and names the prompt without the trailing space; with that
    prompt sentence-transformers gives embedlab's vectors, with the original it does not."""
    from transformers import AutoTokenizer

    from embedlab.sources.resolve import resolve_source

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_source("smollm2-135m")[0]
    )  # the GGUF's tokenizer (cached conversion)
    alone = tokenizer.convert_ids_to_tokens(tokenizer(PROMPT)["input_ids"])
    assert len(alone) == 11 and alone[-2:] == [":", "Ġ"]
    assert st_compat.st_prompt_length(tokenizer, PROMPT) == 11
    assert st_compat.in_context_prompt_length(tokenizer, PROMPT, "what is it") == 10
    assert st_compat.prompt_count_mismatches(tokenizer, {"query": PROMPT}) == [
        st_compat.PromptCount("query", 11, 10, PROMPT.rstrip())
    ]
    model = _tiny_with_tokenizer(tokenizer, tmp_path / "llama", decoder=True)

    def load(prompt):
        return embedlab.load(
            str(model),
            pooling="mean",
            attention="bidirectional",
            prompts={"query": prompt},
            pooling_options={"exclude_instruction": True},
        )

    emb = load(PROMPT)
    messages = _save_quietly(emb, tmp_path / "space")
    assert len(messages) == 1 and "counts 11 tokens" in messages[0] and repr(PROMPT.rstrip()) in messages[0]
    ours, theirs = _round_trip(emb, tmp_path / "space")
    assert cosines(ours, theirs).min() < 0.9999  # one real token of each text is left out by sentence-transformers
    fixed = load(PROMPT.rstrip())
    assert _save_quietly(fixed, tmp_path / "fixed") == []
    ours, theirs = _round_trip(fixed, tmp_path / "fixed")
    np.testing.assert_allclose(cosines(ours, theirs), 1.0, atol=1e-6)


@pytest.mark.slow
def test_readme_smollm2_example_in_sentence_transformers(tmp_path, capsys):
    """The measurement in docs/models.md ("In sentence-transformers such a prompt can pool other tokens"):
    the README's smollm2-135m example saved and reloaded in SentenceTransformer(path); run with ``-s`` to
    print the cosines."""
    queries = [*QUERIES, "symptoms of the flu", "python list comprehension"]
    for prompt, name in ((PROMPT, "space"), (PROMPT.rstrip(), "fixed")):
        emb = embedlab.load(
            "smollm2-135m",
            pooling="mean",
            attention="bidirectional",
            prompts={"query": prompt},
            pooling_options={"exclude_instruction": True},
        )
        messages = _save_quietly(emb, tmp_path / name)
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(tmp_path / name), device="cpu")
        cos = cosines(
            emb.encode(queries, prompt_name="query"),
            st.encode(queries, prompt_name="query", normalize_embeddings=False),
        )
        plain = cosines(emb.encode(queries), st.encode(queries, normalize_embeddings=False))
        with capsys.disabled():
            print(
                f"\n{prompt!r}: warned={bool(messages)} cosine with prompt_name=query: "
                + " ".join(f"{c:.6f}" for c in cos)
                + f"; without a prompt: min {plain.min():.6f}"
            )
        assert plain.min() > 0.99999
        if name == "space":
            assert len(messages) == 1 and cos.min() < 0.999
        else:
            assert messages == [] and cos.min() > 0.99999
