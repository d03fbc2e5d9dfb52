"""Length-sorted batches under a token budget (padding waste stays small, memory stays bounded)."""
from __future__ import annotations

from typing import Iterator, Sequence

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


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists to one length; returns (input_ids, attention_mask) as int64 tensors."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        n = len(seq)
        if side == "right":
            ids[row, :n] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, :n] = 1
        else:
            ids[row, width - n :] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, width - n :] = 1
    return ids, mask
