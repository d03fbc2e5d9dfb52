"""GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup"): a contrastive batch far larger than what fits in memory, with the same gradients.

1. Embed every text in micro-batches **without** a graph, recording each micro-batch's RNG state.
2. Compute the loss on the detached representations (leaves that require grad) and backpropagate it
   to them: this gives d loss / d representation for every text.
3. Re-embed each micro-batch **with** a graph, RNG state restored (same dropout), and backpropagate
   the cached representation gradient into the parameters.

Two savings over the paper's loop, neither of which changes a gradient: the micro-batches may be
planned over all groups at once (``plan``: e.g. length-sorted, so a padded forward pass carries few
pad tokens), and the last micro-batch of the first pass keeps its graph, so it is backpropagated
directly instead of being embedded a third time. Peak activation memory is still that of one
micro-batch; the loss still sees every candidate. Written by hand because the reference
implementation (luyug/GradCache) is not a maintained PyPI library and sentence-transformers'
CachedMultipleNegativesRankingLoss works only on its own modules.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

EmbedFn = Callable[[list[Any]], torch.Tensor]


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def chunks(texts: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


def group_plan(sizes: Sequence[int], micro_batch_size: int) -> list[list[int]]:
    """The paper's plan: each group in order, in chunks of ``micro_batch_size``; indices into the
    concatenation of the groups."""
    plan, offset = [], 0
    for size in sizes:
        plan += chunks(range(offset, offset + size), micro_batch_size)
        offset += size
    return plan


def length_sorted_chunks(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices sorted by length (stable), in chunks of ``size``: micro-batches with little padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + size] for i in range(0, len(order), size)]


def embed_planned(embed: EmbedFn, items: Sequence[Any], plan: Sequence[Sequence[int]]) -> torch.Tensor:
    """Embed ``items`` chunk by chunk as ``plan`` says (with a graph where grad is enabled) and put
    the rows back in item order: the chunks' embeddings are concatenated before any loss sees them."""
    parts = [embed([items[i] for i in chunk]) for chunk in plan]
    order = torch.as_tensor([i for chunk in plan for i in chunk], dtype=torch.long, device=parts[0].device)
    flat = torch.cat(parts)
    return flat[torch.argsort(order)]


def cached_backward(
    embed: EmbedFn,
    groups: Sequence[Sequence[Any]],
    loss_fn: Callable[..., torch.Tensor],
    micro_batch_size: int,
    scale: float = 1.0,
    plan: Sequence[Sequence[int]] | None = None,
) -> torch.Tensor:
    """Backpropagate ``scale * loss_fn(*reps)`` into the parameters behind ``embed``, where ``reps[i]``
    embeds ``groups[i]``, holding at most one micro-batch's activations at a time. ``plan`` lists the
    micro-batches as indices into the concatenation of the groups (every index once; default: each
    group in order, in chunks of ``micro_batch_size``). Returns the (detached) loss. An empty group
    gives an empty (0, d) tensor on the device and with the dtype of the other groups' representations."""
    items = [x for g in groups for x in g]
    assert items, "no text to embed"
    plan = [list(c) for c in (plan if plan is not None else group_plan([len(g) for g in groups], micro_batch_size))]
    states = []
    parts: list[torch.Tensor] = []
    with torch.no_grad():
        for chunk in plan[:-1]:
            states.append(_rng_state())
            parts.append(embed([items[i] for i in chunk]))
    last = embed([items[i] for i in plan[-1]])  # keeps its graph: backpropagated directly below
    flat = torch.cat([*parts, last.detach()]).detach()
    order = torch.as_tensor([i for chunk in plan for i in chunk], dtype=torch.long, device=flat.device)
    where = torch.empty_like(order)
    where[order] = torch.arange(len(order), device=order.device)  # item i sits at row where[i] of flat
    leaves, offset = [], 0
    for g in groups:
        leaves.append(flat[where[offset : offset + len(g)]].detach().requires_grad_())
        offset += len(g)
    loss = loss_fn(*leaves)
    (loss * scale).backward()
    grads = torch.cat([leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves])
    grads = grads[order]  # back to plan order
    n_last = len(plan[-1])
    last.backward(gradient=grads[len(order) - n_last :])
    del last
    offset = 0
    for chunk, state in zip(plan[:-1], states):
        saved = _rng_state()
        _set_rng_state(state)
        rep = embed([items[i] for i in chunk])
        _set_rng_state(saved)
        rep.backward(gradient=grads[offset : offset + len(chunk)])
        offset += len(chunk)
    return loss.detach()
