"""One mechanism counts an instruction's tokens, for encode and training alike, on real tokenizers."""

from __future__ import annotations

import pytest
import torch

from embedlab.models import Embedder
from embedlab.tokenize import tokenize_prompted

TEMPLATE_PREFIX = "Instruct: Retrieve semantically similar text\nQuery: "  # ends in a space
TEXTS = ["a cat sits on the mat", "Why is the sky blue?", "x"]


def _check_split(tok, prompt: str, texts: list[str]) -> list[int]:
    out = tokenize_prompted(tok, texts, prompt, max_length=512)
    for ids, n, text in zip(out.ids, out.prompt_lengths, texts):
        body = tok.decode(ids[n:], skip_special_tokens=True).strip()
        head = tok.decode(ids[:n], skip_special_tokens=True).strip()
        assert body.lower() == text.lower().strip(), (body, text)
        assert "".join(head.lower().split()) == "".join(prompt.lower().split()), (head, prompt)
    return out.prompt_lengths


def test_minilm_wordpiece_prompt_lengths():
    from transformers import AutoTokenizer

    from embedlab.models.aliases import ALIASES

    tok = AutoTokenizer.from_pretrained(str(ALIASES["minilm-l6"].locate()))
    lengths = _check_split(tok, TEMPLATE_PREFIX, TEXTS)
    assert lengths[0] == len(tok(TEMPLATE_PREFIX)["input_ids"]) - 1  # [CLS] + prefix, without the prefix's own [SEP]


@pytest.mark.slow
def test_smollm2_byte_level_bpe_prompt_lengths():
    """Byte-level BPE attaches the prefix's trailing space to the text's first word: tokenizing the
    prefix alone counts one token too many (the old mechanism); the offsets do not."""
    emb = Embedder.from_pretrained("smollm2-135m", pooling="mean", pooling_options={"exclude_instruction": True})
    tok = emb.tokenizer
    lengths = _check_split(tok, TEMPLATE_PREFIX, TEXTS)
    alone = len(tok(TEMPLATE_PREFIX, add_special_tokens=True)["input_ids"])
    assert lengths[0] == alone - 1  # the trailing "Ġ" of the prefix alone is not a token of the full text
    without_space = _check_split(tok, TEMPLATE_PREFIX.rstrip(" "), [" " + t for t in TEXTS])
    assert without_space == lengths


def test_prompt_longer_than_max_length_and_empty_prompt():
    from transformers import AutoTokenizer

    from embedlab.models.aliases import ALIASES

    tok = AutoTokenizer.from_pretrained(str(ALIASES["minilm-l6"].locate()))
    out = tokenize_prompted(tok, ["hello world"], TEMPLATE_PREFIX, max_length=5)
    # [CLS] + 3 prefix tokens + [SEP]: nothing of the text is left, so every token counts as prompt and the
    # pool falls back to the whole row (features.exclude_prefix)
    assert out.truncated == 1 and len(out.ids[0]) == 5 and out.prompt_lengths[0] == 5
    assert tokenize_prompted(tok, ["hello"], "", max_length=8).prompt_lengths == [0]
    assert tokenize_prompted(tok, ["hello"], None, max_length=8).prompt_lengths == [0]


def test_training_and_encode_pool_the_same_tokens(tiny_llama, tmp_path):
    """The trainer's representation of (instruction, text) equals encode(text, prompt=instruction):
    both exclude the same instruction tokens."""
    from embedlab.train.config import TrainConfig
    from embedlab.train.trainer import Trainer

    emb = Embedder.from_pretrained(tiny_llama, pooling="mean", pooling_options={"exclude_instruction": True})
    cfg = TrainConfig(
        model=str(tiny_llama),
        pooling="mean",
        output=str(tmp_path / "o"),
        data="snli-triplets",
        steps=1,
        batch_size=2,
        precision="fp32",
    )
    trainer = Trainer(cfg, emb, show_progress=False)
    prompt = "instruct find similar text : "
    items = [(prompt, t) for t in ["the cat sat", "a dog ran fast"]]
    emb.eval()
    with torch.no_grad():
        trained = torch.nn.functional.normalize(trainer.embed(items), dim=-1)
    encoded = emb.encode([t for _, t in items], prompt=prompt, output="torch")
    torch.testing.assert_close(trained, encoded, atol=1e-5, rtol=1e-5)
    whole = emb.encode([prompt + t for _, t in items], output="torch")
    assert not torch.allclose(whole, encoded, atol=1e-3)  # the instruction really was excluded
