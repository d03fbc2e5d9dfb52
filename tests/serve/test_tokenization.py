"""The server's tokenization: one tokenizer pass per request, the same ids as Embedder.tokenize, and the
cut flags and offsets checked against the HF tokenizer called directly."""

from __future__ import annotations

import pytest

from tests.serve.conftest import TEXTS

LIMIT = 8


def _texts() -> list[str]:
    return [TEXTS[0], "the cat", " ".join(["the big red car"] * 4), TEXTS[4], "a " * 30 + "tree"]


@pytest.mark.parametrize("prompt_name", [None, "query"])
def test_one_pass_gives_encodes_ids_and_the_cut_inputs(prompted_emb, prompt_name):
    from embedlab.serve.tokenization import Tokenization

    texts = _texts()
    tokenization = Tokenization(prompted_emb, LIMIT)
    tokenizer = prompted_emb.tokenizer
    calls = []
    real = type(tokenizer).__call__

    def spy(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    type(tokenizer).__call__ = spy
    try:
        got = tokenization.texts(texts, prompt_name)
    finally:
        type(tokenizer).__call__ = real
    assert len(calls) == 1  # one pass for the whole request: no probe, no second pass for the cut ones
    prompt = prompted_emb.resolve_prompt(prompt_name)
    ref = prompted_emb.with_options(max_length=LIMIT).tokenize(texts, prompt)
    assert got.ids == ref.ids and got.prompt_lengths == ref.prompt_lengths
    # cut = longer than the limit untruncated, asked of the HF tokenizer directly
    full = [len(tokenizer(prompt + t)["input_ids"]) for t in texts]
    assert got.cut == [n > LIMIT for n in full] and 0 < got.truncated < len(texts)
    assert got.truncated == ref.truncated


def test_offsets_index_the_text_and_skip_specials_and_the_prompt(prompted_emb):
    from embedlab.serve.tokenization import Tokenization

    texts = _texts()
    got = Tokenization(prompted_emb, LIMIT).texts(texts, "query")
    tokenizer = prompted_emb.tokenizer
    for text, ids, spans, n_prompt in zip(texts, got.ids, got.offsets, got.prompt_lengths):
        assert len(spans) == len(ids)
        assert all(s is None for s in spans[:n_prompt])  # [CLS] and the prompt's tokens
        special = set(tokenizer.all_special_ids)
        for token_id, span in zip(ids[n_prompt:], spans[n_prompt:]):
            if token_id in special:
                assert span is None
                continue
            piece = tokenizer.convert_ids_to_tokens(token_id).removeprefix("##")
            assert text[span[0] : span[1]].lower() == piece


def test_no_truncate_refuses_naming_the_first_long_input(tiny_emb):
    from embedlab.errors import InputError
    from embedlab.serve.tokenization import Tokenization

    texts = _texts()
    over = [i for i, text in enumerate(texts) if len(tiny_emb.tokenizer(text)["input_ids"]) > LIMIT]
    assert over
    t = Tokenization(tiny_emb, LIMIT, truncate=False)
    with pytest.raises(InputError, match=rf"input {over[0]} has more than {LIMIT} tokens \({len(over)} of 5 ") as info:
        t.texts(texts)
    assert getattr(info.value, "http_status", None) == 413
    assert t.texts(texts, truncate=True).truncated == len(over)


def test_token_ids_are_cut_or_refused(tiny_emb):
    from embedlab.errors import InputError
    from embedlab.serve.tokenization import Tokenization

    t = Tokenization(tiny_emb, 4)
    got = t.ids([[5, 6, 7], [5, 6, 7, 8, 9, 10]])
    assert got.ids == [[5, 6, 7], [5, 6, 7, 8]] and got.cut == [False, True]
    with pytest.raises(InputError, match="outside the vocabulary"):
        t.ids([[10**7]])
    with pytest.raises(InputError, match="more than 4"):
        t.ids([[5] * 5], truncate=False)
