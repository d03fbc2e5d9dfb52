"""The features dict: the only contract between the modules of an embedder chain.

Every module reads the keys it needs and adds or overwrites others, in the order of the chain
(source -> pooling -> [projection] -> [truncation] -> [normalisation] -> ...).

=====================  ==========================  ==========================================================
key                    shape, dtype                written by
=====================  ==========================  ==========================================================
``input_ids``          (B, T) int64                the embedder (token-budget batches, left or right padding)
``attention_mask``     (B, T) int64, 1 = real      the embedder
``prompt_length``      (B,) int64                  the embedder: leading tokens of each row that belong to its
                                                   instruction/prompt (0 when none); see embedlab.tokenize
``token_embeddings``   (B, T, d) float32           the source: last-layer token states
``pool_mask``          (B, T) int64                the source: ``attention_mask`` with the prompt's tokens zeroed
                                                   for heads that exclude them (never an empty row)
``hidden_states``      tuple of L (B, T, d)        the source, only when a module ``needs_hidden_states``:
                                                   layers 1..L (embedding output excluded; the last is post-norm)
``layer_summaries``    {rule: (B, L, d)}           a caching source instead of ``hidden_states``: one vector per
                                                   layer per :data:`LAYER_SUMMARIES` rule
``sentence_embedding`` (B, k) float32              pooling, then rewritten by every later module
``sparse_embedding``   {"indices": (B, K) int64,   a sparse (lexical) head: weights over the vocabulary, K slots
                       "values": (B, K) float32,   a row (index < 0 or weight 0 marks an unused slot; the order
                       "vocab_size": V}            within a row is free, a repeated index is an error)
``token_vectors``      (B, T, d') float32          a late-interaction (multi-vector) head: one vector per token
``token_mask``         (B, T) int64, 1 = kept      the same head: which of ``token_vectors`` belong to the text
                                                   (ragged: row i keeps ``token_mask[i].sum()`` vectors, in order)
=====================  ==========================  ==========================================================

The last three keys are the contract for the coming sparse and multi-vector heads (no head writes them
yet). :func:`embedlab.vectors.from_features` turns a batch's features into the typed result for each
output kind (dense and binary from ``sentence_embedding``, sparse from ``sparse_embedding``,
multi-vector from ``token_vectors`` + ``token_mask``), which ``Embedder.encode(..., output=kind)``
returns; the index, the server and export dispatch on that result's ``kind``, never on a head's name.
"""

from __future__ import annotations

from typing import Any

import torch

LAYER_SUMMARIES = ("last_token", "mean")


def first_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real token of each row (either padding side)."""
    return mask.to(torch.int32).argmax(dim=1)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row (either padding side)."""
    seq_len = mask.shape[1]
    return seq_len - 1 - mask.to(torch.int32).flip(1).argmax(dim=1)


def gather_positions(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, T, d), index (B,) -> (B, d)."""
    return x[torch.arange(x.shape[0], device=x.device), index]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, T, d) over the positions where mask (B, T) is 1."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def exclude_prefix(mask: torch.Tensor, prefix_lengths: torch.Tensor) -> torch.Tensor:
    """Zero the first ``prefix_lengths[i]`` real tokens of row i (padding side agnostic).

    Rows that would be left with no token keep their full mask (a prompt longer than the
    truncated text must not produce an empty pool).
    """
    position = mask.to(torch.int64).cumsum(dim=1)  # 1..n over real tokens, under either padding
    out = mask * (position > prefix_lengths.to(position.device).unsqueeze(1)).to(mask.dtype)
    empty = out.sum(dim=1) == 0
    if bool(empty.any()):
        out[empty] = mask[empty]
    return out


def summarize(states: torch.Tensor, rule: str, attention_mask: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
    """One vector per row of ``states`` (B, T, d): the last real token, or the masked mean over ``pool_mask``."""
    if rule == "last_token":
        return gather_positions(states, last_token_index(attention_mask))
    if rule == "mean":
        return masked_mean(states, pool_mask)
    raise ValueError(f"unknown summary rule {rule!r}; choose one of {LAYER_SUMMARIES}")


def summarize_layers(features: dict[str, Any], rule: str) -> torch.Tensor:
    """(B, L, d): one summary per hidden layer, from ``layer_summaries`` if a caching source gave them,
    else from ``hidden_states``. The one implementation of the per-layer summary."""
    cached = features.get("layer_summaries")
    if cached is not None:
        return cached[rule]
    hidden = features.get("hidden_states")
    if hidden is None:
        raise KeyError("hidden_states")
    mask, pool = features["attention_mask"], features["pool_mask"]
    return torch.stack([summarize(h, rule, mask, pool) for h in hidden], dim=1)


def default_summary(attention: str) -> str:
    """The headline paper's rule: the last (EOS) token under causal attention, the masked mean under
    bidirectional attention (its Models 3 and 5)."""
    return "last_token" if attention == "causal" else "mean"
