"""Length-sorted batches under a token budget (padding waste stays small, memory stays bounded)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch


def token_budget_batches(lengths: Sequence[int], token_budget: int, max_batch_size: int) -> Iterator[list[int]]:
    """Yield index lists, longest texts first; each batch has ``len(batch) * max_len <= token_budget``
    (a single text longer than the budget forms its own batch) and at most ``max_batch_size`` items."""
    if token_budget <= 0 or max_batch_size <= 0:
        raise ValueError("token_budget and max_batch_size must be positive")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    batch_max = 0
    for i in order:
        n = lengths[i]
        new_max = max(batch_max, n)
        if batch and ((len(batch) + 1) * new_max > token_budget or len(batch) >= max_batch_size):
            yield batch
            batch, new_max = [], n
        batch.append(i)
        batch_max = new_max
    if batch:
        yield batch


def padding_aware_batches(
    lengths: Sequence[int], token_budget: int, max_batch_size: int, overhead_tokens: int
) -> list[list[int]]:
    """Split inputs into batches of similar length that minimise the total cost
    ``sum(overhead_tokens + rows * longest)`` over batches, with every batch inside the token budget and
    ``max_batch_size`` rows (a single text longer than the budget forms its own batch).

    ``overhead_tokens`` is the fixed cost of one forward pass expressed in padded tokens (on a CPU,
    reading the weights once costs about as much as tens of tokens). A large value favours few, big batches
    (as :func:`token_budget_batches`); 0 puts every distinct length in its own batch. Solved exactly by
    dynamic programming over the length-sorted inputs (an optimal partition of sorted items is contiguous).
    Batches come out shortest first; indices refer to ``lengths``."""
    if token_budget <= 0 or max_batch_size <= 0 or overhead_tokens < 0:
        raise ValueError("token_budget and max_batch_size must be positive, overhead_tokens non-negative")
    n = len(lengths)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: lengths[i])
    sorted_len = [int(lengths[i]) for i in order]
    best = [0.0] + [float("inf")] * n  # best[j]: the cheapest split of the j shortest inputs
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = sorted_len[j - 1]
        rows_allowed = max(1, min(max_batch_size, token_budget // max(longest, 1)))
        for i in range(j - 1, max(j - rows_allowed, 0) - 1, -1):  # the last batch holds inputs i..j-1
            cost = best[i] + overhead_tokens + (j - i) * longest
            if cost <= best[j]:  # on a tie, the larger batch (fewer passes)
                best[j], cut[j] = cost, i
    batches: list[list[int]] = []
    j = n
    while j > 0:
        batches.append([order[k] for k in range(cut[j], j)])
        j = cut[j]
    batches.reverse()
    return batches


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists (or int arrays) to one length; returns (input_ids, attention_mask) as int64
    tensors. Filled in numpy and handed to torch without a copy."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    width = int(lengths.max())
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, (seq, n) in enumerate(zip(sequences, lengths)):
        if side == "right":
            ids[row, :n] = seq
            mask[row, :n] = 1
        else:
            ids[row, width - n :] = seq
            mask[row, width - n :] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)
