"""Future-token sensitivity: in bidirectional mode a later token changes an earlier position's state
in every layer; in causal mode in none. Every decoder family, sdpa and eager, left- and right-padded batches."""

from __future__ import annotations

import json
import re

import pytest
import torch

from embedlab.errors import EmbedlabError
from embedlab.models import Backbone, Embedder

from ..conftest import DECODERS


def future_token_effect(backbone: Backbone, side: str) -> tuple[list[float], float]:
    """(change at an earlier real position in every layer 1..L, change at the last position in the last
    layer) when the last token of the longest row changes, in a padded batch. Every layer's hidden state
    is probed: a model bidirectional in its last layer only would still leak nothing in the earlier ones."""
    tok = backbone.tokenizer
    rows = [tok("the cat sat on the mat")["input_ids"], tok("a dog ran")["input_ids"]]
    width = max(map(len, rows))

    def states(last_id):
        seqs = [rows[0][:-1] + [last_id], rows[1]]
        ids = torch.full((2, width), tok.pad_token_id)
        mask = torch.zeros((2, width), dtype=torch.long)
        for i, s in enumerate(seqs):
            sl = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
            ids[i, sl] = torch.tensor(s)
            mask[i, sl] = 1
        with torch.no_grad():
            out = backbone.model(input_ids=ids, attention_mask=mask, output_hidden_states=True, return_dict=True)
        assert len(out.hidden_states) == backbone.num_layers + 1  # the embeddings, then one state per layer
        return out.hidden_states[1:]

    a, b = states(tok.convert_tokens_to_ids("dog")), states(tok.convert_tokens_to_ids("river"))
    # row 0 is the longest: no padding, so position 1 is a real token under either side
    return [float((x[0, 1] - y[0, 1]).abs().max()) for x, y in zip(a, b)], float(
        (a[-1][0, -1] - b[-1][0, -1]).abs().max()
    )


@pytest.mark.parametrize("family", DECODERS)
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_decoder_attention_modes(tiny_models, family, impl, side):
    causal = Backbone.load(tiny_models[family], attention="causal", attn_implementation=impl)
    earlier, last = future_token_effect(causal, side)
    assert len(earlier) == causal.num_layers == 2
    assert last > 1e-4 and max(earlier) < 1e-6, (earlier, last)  # no layer sees the future
    bidi = Backbone.load(tiny_models[family], attention="bidirectional", attn_implementation=impl)
    assert bidi.attention == "bidirectional" and bidi.config.is_causal is False
    earlier, last = future_token_effect(bidi, side)
    assert min(earlier) > 1e-4, earlier  # every layer sees the future


def test_transformers_older_than_5_2_is_refused(tiny_llama, monkeypatch):
    import transformers

    from embedlab.models.backbone import check_transformers_version

    for ok in ("5.2.0", "5.24.0", "6.0.0"):
        monkeypatch.setattr(transformers, "__version__", ok)
        check_transformers_version()
    for old in ("4.57.1", "5.1.0", "5.2.0.dev0"):
        monkeypatch.setattr(transformers, "__version__", old)
        with pytest.raises(EmbedlabError, match=rf"transformers {re.escape(old)} is too old: .*>= 5\.2") as info:
            check_transformers_version()
        assert "\n" not in str(info.value)
    monkeypatch.setattr(transformers, "__version__", "5.1.0")
    with pytest.raises(EmbedlabError, match="too old"):
        Backbone.load(tiny_llama, attention="bidirectional")  # refused when a backbone is loaded
    with pytest.raises(EmbedlabError, match="too old"):
        Embedder.from_pretrained(tiny_llama, pooling="mean")


def test_bidirectional_is_persisted(tiny_llama, tmp_path):
    emb = Embedder.from_pretrained(tiny_llama, attention="bidirectional", pooling="mean")
    emb.save(tmp_path / "e")
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert config["is_causal"] is False and config["use_bidirectional_attention"] is True
    again = Embedder.from_pretrained(tmp_path / "e")
    assert again.attention == "bidirectional"
    earlier, _ = future_token_effect(again.backbone, "right")
    assert min(earlier) > 1e-4
    # and back to causal on request, persisted too
    causal = Embedder.from_pretrained(tmp_path / "e", attention="causal")
    causal.save(tmp_path / "c")
    assert json.loads((tmp_path / "c" / "config.json").read_text())["is_causal"] is True
    assert Embedder.from_pretrained(tmp_path / "c").attention == "causal"


def test_encoder_stays_bidirectional(tiny_bert):
    bb = Backbone.load(tiny_bert)
    assert bb.attention == "bidirectional" and not bb.is_decoder
    earlier, _ = future_token_effect(bb, "right")
    assert min(earlier) > 1e-4
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
        assert len(earlier) == 30 and last > 1e-3 and max(earlier) < 1e-5, (earlier, last)
        bidi = Backbone.load("smollm2-135m", attention="bidirectional", attn_implementation=impl)
        earlier, _ = future_token_effect(bidi, side)
        assert min(earlier) > 1e-3, earlier
