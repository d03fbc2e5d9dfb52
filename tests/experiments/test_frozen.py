"""embedlab.experiments.frozen: the cached-feature source serves, per row, exactly what the live frozen
backbone computes (token states, per-layer last-token and masked-mean summaries, worked out here from the
live hidden states), computes each row once, and stores in the dtype asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedlab.errors import ConfigError
from embedlab.experiments.frozen import CachedFeatureSource
from embedlab.models.backbone import Backbone
from embedlab.models.batching import pad_batch

TEXTS = ["the cat sat on the mat", "a dog", "blue sky and a big red car", "the cat sat on the mat"]


@pytest.fixture(scope="module")
def backbone(tiny_llama):
    return Backbone.load(tiny_llama, attention="causal", max_length=32)


def features_of(bb, texts):
    """Token ids padded as a batch, on the backbone's padding side."""
    input_ids, mask = pad_batch(bb.tokenize(texts).ids, bb.tokenizer.pad_token_id, bb.padding_side)
    return {"input_ids": input_ids, "attention_mask": mask}


def live(bb, features):
    with torch.no_grad():
        return bb({k: v.clone() for k, v in features.items()}, output_hidden_states=True)


def test_frozen_screen_runs_the_real_chain(tiny_llama):
    """Cached features through the same modules give the live model's vectors, for every head, with and
    without an excluded instruction; the backbone runs once per text."""
    from embedlab.models import Embedder
    from embedlab.models.pooling import build_head

    texts = ["the cat sat on the mat", "a dog", "blue sky and a big red car"]
    for attention in ("causal", "bidirectional"):
        bb = Backbone.load(tiny_llama, attention=attention, max_length=32).with_options(append_eos=True)
        cached = CachedFeatureSource(bb, dtype="fp32", storage_dtype=torch.float32)
        for pooling in ("last_token", "mean", "last_layer", "multi_layer", "latent_attention"):
            torch.manual_seed(0)
            opts = (
                {"num_latents": 3, "num_heads": 2}
                if pooling in ("last_layer", "multi_layer", "latent_attention")
                else {}
            )
            exclude = pooling in ("mean",)
            head = build_head(pooling, 32, num_layers=2, attention=attention, exclude_instruction=exclude, **opts)
            live = Embedder([bb, head]).encode(texts, prompt="instruct find :")
            screen = Embedder([cached, head]).encode(texts, prompt="instruct find :")
            np.testing.assert_allclose(screen, live, atol=1e-5, err_msg=f"{pooling}/{attention}")
        assert cached.computed == len(cached) <= 2 * len(texts)  # with and without the prompt length key
        with pytest.raises(ConfigError, match="cannot be saved"):
            Embedder([cached, head]).save("/tmp/never-written")


def test_each_row_is_served_the_live_states(backbone):
    features = features_of(backbone, TEXTS)
    expected = live(backbone, features)
    cached = CachedFeatureSource(backbone, dtype="fp32", storage_dtype=torch.float32)
    out = cached({k: v.clone() for k, v in features.items()})
    mask = features["attention_mask"].bool()
    hidden = expected["hidden_states"]
    assert out["layer_summaries"]["mean"].shape == (len(TEXTS), len(hidden), backbone.hidden_size)
    for i in range(len(TEXTS)):
        real = mask[i]
        torch.testing.assert_close(
            out["token_embeddings"][i][real], expected["token_embeddings"][i][real], atol=1e-5, rtol=1e-4
        )
        assert not out["token_embeddings"][i][~real].any()  # padding positions stay zero
        last = int(real.nonzero().max())  # the last real token, by hand, whichever side pads
        for layer, h in enumerate(hidden):
            torch.testing.assert_close(
                out["layer_summaries"]["mean"][i, layer], h[i][real].mean(0), atol=1e-5, rtol=1e-4
            )
            torch.testing.assert_close(out["layer_summaries"]["last_token"][i, layer], h[i, last], atol=1e-5, rtol=1e-4)
    assert torch.equal(out["pool_mask"], features["attention_mask"])


def test_each_row_is_computed_once_and_the_backbone_stays_as_it_was(backbone):
    backbone.train()
    cached = CachedFeatureSource(backbone, dtype="fp32")
    assert not any(p.requires_grad for p in backbone.parameters())
    features = features_of(backbone, TEXTS)
    cached({k: v.clone() for k, v in features.items()})
    assert cached.computed == len(cached) == 3  # the repeated text is one row
    cached({k: v.clone() for k, v in features.items()})
    assert cached.computed == 3
    cached(features_of(backbone, ["a new text", "a dog"]))
    assert cached.computed == len(cached) == 4
    assert backbone.training  # restored after the eval-mode feature pass
    backbone.eval()
    assert cached.hidden_size == backbone.hidden_size and cached.num_layers == backbone.num_layers
    assert cached.tokenizer is backbone.tokenizer and cached.is_decoder


def test_bf16_storage_is_the_fp32_features_rounded(backbone):
    features = features_of(backbone, TEXTS[:3])
    exact = CachedFeatureSource(backbone, dtype="fp32", storage_dtype=torch.float32)
    small = CachedFeatureSource(backbone, dtype="fp32")  # bf16 storage by default
    a = exact({k: v.clone() for k, v in features.items()})
    b = small({k: v.clone() for k, v in features.items()})
    assert all(t.dtype == torch.bfloat16 for t in small._tokens.values())
    assert b["token_embeddings"].dtype == torch.float32
    torch.testing.assert_close(b["token_embeddings"], a["token_embeddings"].to(torch.bfloat16).float(), atol=0, rtol=0)
    torch.testing.assert_close(
        b["layer_summaries"]["mean"], a["layer_summaries"]["mean"].to(torch.bfloat16).float(), atol=0, rtol=0
    )
    assert not torch.equal(b["token_embeddings"], a["token_embeddings"])  # really rounded
