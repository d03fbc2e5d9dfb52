"""GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup"): a contrastive batch far larger than what fits in memory, with the same gradients.

1. Embed every text in micro-batches **without** a graph, recording each micro-batch's RNG state.
2. Compute the loss on the detached representations (leaves that require grad) and backpropagate it
   to them: this gives d loss / d representation for every text.
3. Re-embed each micro-batch **with** a graph, RNG state restored (same dropout), and backpropagate
   the cached representation gradient into the parameters.

Peak activation memory is that of one micro-batch; the loss still sees every candidate. Written by
hand because the reference implementation (luyug/GradCache) is not a maintained PyPI library and
sentence-transformers' CachedMultipleNegativesRankingLoss works only on its own modules.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

EmbedFn = Callable[[list[str]], torch.Tensor]


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def chunks(texts: Sequence[str], size: int) -> list[list[str]]:
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


def cached_backward(embed: EmbedFn, groups: Sequence[Sequence[str]], loss_fn: Callable[..., torch.Tensor],
                    micro_batch_size: int, scale: float = 1.0) -> torch.Tensor:
    """Backpropagate ``scale * loss_fn(*reps)`` into the parameters behind ``embed``, where ``reps[i]``
    embeds ``groups[i]``, holding at most ``micro_batch_size`` texts' activations at a time.
    Returns the (detached) loss. An empty group gives an empty (0, d) tensor on the device and with
    the dtype of the other groups' representations."""
    states: list[list] = []
    reps: list[torch.Tensor | None] = []
    with torch.no_grad():
        for group in groups:
            parts, group_states = [], []
            for chunk in chunks(group, micro_batch_size):
                group_states.append(_rng_state())
                parts.append(embed(chunk))
            states.append(group_states)
            reps.append(torch.cat(parts) if parts else None)
    ref = next((r for r in reps if r is not None), None)
    assert ref is not None, "no text to embed"
    leaves = [(r if r is not None else ref.new_zeros(0, ref.shape[1])).detach().requires_grad_() for r in reps]
    loss = loss_fn(*leaves)
    (loss * scale).backward()
    for group, group_states, leaf in zip(groups, states, leaves):
        offset = 0
        for chunk, state in zip(chunks(group, micro_batch_size), group_states):
            saved = _rng_state()
            _set_rng_state(state)
            rep = embed(chunk)
            _set_rng_state(saved)
            assert leaf.grad is not None
            rep.backward(gradient=leaf.grad[offset : offset + len(chunk)])
            offset += len(chunk)
    return loss.detach()
