"""Each pooling head against a plain reference computation (loops / explicit softmax)."""

from __future__ import annotations

import math

import pytest
import torch

from embedlab.errors import PoolingError
from embedlab.models.pooling import (
    POOLING_HEADS,
    PoolingHead,
    build_head,
    exclude_prefix,
    first_token_index,
    last_token_index,
)

torch.manual_seed(0)
B, T, D = 3, 6, 16
LENGTHS = [6, 4, 2]


def make_batch(side: str, prompt: int = 0):
    x = torch.randn(B, T, D)
    mask = torch.zeros(B, T, dtype=torch.long)
    for i, n in enumerate(LENGTHS):
        if side == "right":
            mask[i, :n] = 1
        else:
            mask[i, T - n :] = 1
    pool = exclude_prefix(mask, torch.full((B,), prompt)) if prompt else mask
    return {"token_embeddings": x, "attention_mask": mask, "pool_mask": pool}


def real_positions(mask_row):
    return [t for t in range(len(mask_row)) if mask_row[t]]


def test_mask_helpers_hand_cases():
    right = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 0]
    assert last_token_index(left).tolist() == [3, 3]
    assert first_token_index(right).tolist() == [0, 0]
    assert first_token_index(left).tolist() == [1, 3]
    assert exclude_prefix(right, torch.tensor([2, 2])).tolist() == [[0, 0, 1, 0], [1, 0, 0, 0]]  # row 2 would be empty
    assert exclude_prefix(left, torch.tensor([1, 0])).tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("prompt", [0, 1])
def test_plain_heads_match_reference(side, prompt):
    f = make_batch(side, prompt)
    x, mask = f["token_embeddings"], f["attention_mask"]
    for name in ("cls", "mean", "weighted_mean", "last_token"):
        head = build_head(name, D, exclude_instruction=bool(prompt) and name in ("mean", "weighted_mean"))
        got = head.pool(f)
        for i in range(B):
            pos = real_positions(mask[i])
            pooled_pos = pos[prompt:] if head.exclude_instruction and len(pos) > prompt else pos
            if name == "cls":
                ref = x[i, pos[0]]
            elif name == "last_token":
                ref = x[i, pos[-1]]
            elif name == "mean":
                ref = sum(x[i, t] for t in pooled_pos) / len(pooled_pos)
            else:  # SGPT: weight = 1-based position among real tokens
                w = {t: k + 1 for k, t in enumerate(pos)}
                ref = sum(w[t] * x[i, t] for t in pooled_pos) / sum(w[t] for t in pooled_pos)
            torch.testing.assert_close(got[i], ref, msg=f"{name} {side} row {i}")


def reference_cross_attention(attn, queries, context):
    """Explicit multi-head softmax(QK^T/sqrt(d))V with the module's weights."""
    q = attn.to_q(attn.norm_q(queries))
    k, v = attn.to_kv(attn.norm_ctx(context)).chunk(2, dim=-1)
    outs = []
    for h in range(attn.num_heads):
        sl = slice(h * attn.head_dim, (h + 1) * attn.head_dim)
        scores = q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(attn.head_dim)
        outs.append(torch.softmax(scores, dim=-1) @ v[..., sl])
    return attn.to_out(torch.cat(outs, dim=-1))


def reference_ff(head, x):
    lin1, _, lin2 = head.ff.net
    a, g = lin1(head.norm_ff(x)).chunk(2, dim=-1)
    return lin2(a * torch.nn.functional.gelu(g))


@pytest.mark.parametrize("side", ["left", "right"])
def test_latent_attention_matches_reference(side):
    f = make_batch(side, prompt=1)
    head = build_head(
        "latent_attention", D, num_latents=5, num_heads=2, head_dim=4, ff_mult=2, exclude_instruction=True
    )
    got = head.pool(f)
    x = f["token_embeddings"]
    lat = head.latents.unsqueeze(0).expand(B, -1, -1)
    h = x + reference_cross_attention(head.attn, x, lat)
    h = h + reference_ff(head, h)
    for i in range(B):
        pos = [t for t in range(T) if f["pool_mask"][i, t]]
        torch.testing.assert_close(got[i], h[i, pos].mean(0))
    # tokens are the queries: padding positions must not influence real rows
    f2 = dict(f, token_embeddings=x.masked_fill(f["attention_mask"].unsqueeze(-1) == 0, 1e3))
    torch.testing.assert_close(head.pool(f2), got)


@pytest.mark.parametrize("summary", ["last_token", "mean"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_multi_layer_matches_reference(summary, side):
    f = make_batch(side)
    L = 3
    f["hidden_states"] = tuple(torch.randn(B, T, D) for _ in range(L))
    head = build_head("multi_layer", D, num_layers=L, layer_summary=summary, num_latents=4, num_heads=2, head_dim=8)
    got = head.pool(f)
    rows = []
    for i in range(B):
        pos = real_positions(f["attention_mask"][i])
        per_layer = [hs[i, pos[-1]] if summary == "last_token" else hs[i, pos].mean(0) for hs in f["hidden_states"]]
        rows.append(torch.stack(per_layer))
    layers = torch.stack(rows) + head.layer_embedding.weight  # additive per-layer embedding
    x = head.latents.unsqueeze(0).expand(B, -1, -1)
    x = x + reference_cross_attention(head.attn, x, layers)
    x = x + reference_ff(head, x)
    torch.testing.assert_close(got, x.mean(1))


@pytest.mark.parametrize(
    "name", [n for n, cls in POOLING_HEADS.items() if cls.kind == "pooling"]
)  # splade: test_sparse
def test_save_load_round_trip(tmp_path, name):
    f = make_batch("right")
    f["hidden_states"] = tuple(torch.randn(B, T, D) for _ in range(2))
    head = build_head(
        name, D, num_layers=2, **({"num_latents": 3, "num_heads": 2} if POOLING_HEADS[name].trainable else {})
    )
    head.save(tmp_path / "p")
    again = PoolingHead.load(tmp_path / "p")
    assert type(again) is type(head) and again.get_config() == head.get_config()
    torch.testing.assert_close(again.pool(f), head.pool(f), rtol=0, atol=0)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("context", ["tokens", "last_token"])
def test_last_layer_matches_reference(side, context):
    """Tang & Yang's last-layer head: latents are the queries over the last layer's tokens (Model 4) or
    over the EOS state alone (Model 2); padding never enters the keys."""
    f = make_batch(side, prompt=1 if context == "tokens" else 0)
    head = build_head(
        "last_layer",
        D,
        context=context,
        num_latents=4,
        num_heads=2,
        head_dim=8,
        exclude_instruction=context == "tokens",
    )
    got = head.pool(f)
    x = f["token_embeddings"]
    for i in range(B):
        pos = real_positions(f["attention_mask"][i])
        keep = [t for t in range(T) if f["pool_mask"][i, t]] if context == "tokens" else [pos[-1]]
        lat = head.latents.unsqueeze(0)
        ctx = x[i, keep].unsqueeze(0)
        y = lat + reference_cross_attention(head.attn, lat, ctx)
        y = y + reference_ff(head, y)
        torch.testing.assert_close(got[i], y[0].mean(0))
    f2 = dict(f, token_embeddings=x.masked_fill(f["attention_mask"].unsqueeze(-1) == 0, 1e3))
    torch.testing.assert_close(head.pool(f2), got)


def test_attention_dependent_defaults_live_in_the_head():
    """The paper's rule (last token if causal, else mean / all tokens) is the head's, applied by build_head."""
    assert build_head("multi_layer", D, num_layers=2, attention="causal").layer_summary == "last_token"
    assert build_head("multi_layer", D, num_layers=2, attention="bidirectional").layer_summary == "mean"
    assert build_head("last_layer", D, attention="causal").context == "last_token"
    assert build_head("last_layer", D, attention="bidirectional").context == "tokens"
    assert build_head("last_layer", D, attention="causal", context="tokens").context == "tokens"  # explicit wins


def test_paper_presets_parameter_counts():
    """Reference figures from methods.md: multi-layer ~1.28 B (Mistral-7B, 32 layers), NV-Embed ~0.74 B."""
    with torch.device("meta"):
        ml = build_head("multi_layer", 4096, num_layers=32, preset="paper")
        la = build_head("latent_attention", 4096, preset="paper")
    assert 1.25e9 < ml.num_parameters() < 1.31e9
    assert 0.72e9 < la.num_parameters() < 0.76e9
    with torch.device("meta"):
        ll = build_head("last_layer", 4096, preset="paper")
    assert ml.num_parameters() - ll.num_parameters() == 32 * 4096  # the same block without the layer embedding


def test_bad_configs():
    with pytest.raises(PoolingError, match="unknown pooling"):
        build_head("max", D)
    with pytest.raises(PoolingError, match="no option"):
        build_head("mean", D, num_latents=3)
    with pytest.raises(PoolingError, match="cannot exclude"):
        build_head("last_token", D, exclude_instruction=True)
    with pytest.raises(PoolingError, match="layer_summary"):
        build_head("multi_layer", D, num_layers=2, layer_summary="max")
    with pytest.raises(PoolingError, match="divisible"):
        build_head("latent_attention", 10, num_heads=3)
    with pytest.raises(PoolingError, match="preset"):
        build_head("mean", D, preset="paper")


def test_corrupt_weights_are_reported(tmp_path):
    head = build_head("latent_attention", D, num_latents=2, num_heads=2)
    head.save(tmp_path / "p")
    (tmp_path / "p" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(PoolingError, match="corrupt"):
        PoolingHead.load(tmp_path / "p")
    (tmp_path / "p" / "config.json").write_text("{not json")
    with pytest.raises(PoolingError, match="not valid JSON"):
        PoolingHead.load(tmp_path / "p")
