"""Future-token sensitivity: in bidirectional mode a later token changes an earlier position's state;
in causal mode it does not. Every decoder family, sdpa and eager, left- and right-padded batches."""
from __future__ import annotations

import json

import pytest
import torch

from embedlab.errors import EmbedlabError
from embedlab.models import Backbone, Embedder

from ..conftest import DECODERS


def future_token_effect(backbone: Backbone, side: str) -> tuple[float, float]:
    """(change at an earlier real position, change at the last position) when the last token of the
    longest row changes, in a padded batch."""
    tok = backbone.tokenizer
    rows = [tok("the cat sat on the mat")["input_ids"], tok("a dog ran")["input_ids"]]
    width = max(map(len, rows))

    def batch(last_id):
        seqs = [rows[0][:-1] + [last_id], rows[1]]
        ids = torch.full((2, width), tok.pad_token_id)
        mask = torch.zeros((2, width), dtype=torch.long)
        for i, s in enumerate(seqs):
            sl = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
            ids[i, sl] = torch.tensor(s)
            mask[i, sl] = 1
        return ids, mask

    with torch.no_grad():
        a = backbone(*batch(tok.convert_tokens_to_ids("dog")))["token_embeddings"]
        b = backbone(*batch(tok.convert_tokens_to_ids("river")))["token_embeddings"]
    # row 0 is the longest: no padding, so position 1 is a real token under either side
    return float((a[0, 1] - b[0, 1]).abs().max()), float((a[0, -1] - b[0, -1]).abs().max())


@pytest.mark.parametrize("family", DECODERS)
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_decoder_attention_modes(tiny_models, family, impl, side):
    causal = Backbone.load(tiny_models[family], attention="causal", attn_implementation=impl)
    earlier, last = future_token_effect(causal, side)
    assert last > 1e-4 and earlier < 1e-6, (earlier, last)
    bidi = Backbone.load(tiny_models[family], attention="bidirectional", attn_implementation=impl)
    assert bidi.attention == "bidirectional" and bidi.config.is_causal is False
    earlier, last = future_token_effect(bidi, side)
    assert earlier > 1e-4, earlier


def test_bidirectional_is_persisted(tiny_llama, tmp_path):
    emb = Embedder.from_pretrained(tiny_llama, attention="bidirectional", pooling="mean")
    emb.save(tmp_path / "e")
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert config["is_causal"] is False and config["use_bidirectional_attention"] is True
    again = Embedder.from_pretrained(tmp_path / "e")
    assert again.attention == "bidirectional"
    earlier, _ = future_token_effect(again.backbone, "right")
    assert earlier > 1e-4
    # and back to causal on request, persisted too
    causal = Embedder.from_pretrained(tmp_path / "e", attention="causal")
    causal.save(tmp_path / "c")
    assert json.loads((tmp_path / "c" / "config.json").read_text())["is_causal"] is True
    assert Embedder.from_pretrained(tmp_path / "c").attention == "causal"


def test_encoder_stays_bidirectional(tiny_bert):
    bb = Backbone.load(tiny_bert)
    assert bb.attention == "bidirectional" and not bb.is_decoder
    earlier, _ = future_token_effect(bb, "right")
    assert earlier > 1e-4
    with pytest.raises(EmbedlabError, match="encoder"):
        Backbone.load(tiny_bert, attention="causal")
    with pytest.raises(EmbedlabError, match="unknown attention"):
        Backbone.load(tiny_bert, attention="sideways")


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_smollm2_attention_modes(impl):
    for side in ("left", "right"):
        causal = Backbone.load("smollm2-135m", attention="causal", attn_implementation=impl)
        earlier, last = future_token_effect(causal, side)
        assert last > 1e-3 and earlier < 1e-5, (earlier, last)
        bidi = Backbone.load("smollm2-135m", attention="bidirectional", attn_implementation=impl)
        earlier, _ = future_token_effect(bidi, side)
        assert earlier > 1e-3
