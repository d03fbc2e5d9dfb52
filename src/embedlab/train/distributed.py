"""Data parallelism for contrastive training (torchrun sets RANK/WORLD_SIZE/MASTER_ADDR).

Each process embeds its share of the contrastive batch; the representations are gathered so that
every query competes against the candidates of all processes. :func:`gather_with_grad` is written by
hand (one line why: ``torch.distributed.nn.all_gather`` all-reduces the gradient in backward, which
double-counts when every rank computes the same global loss): forward = all_gather, backward = this
rank's slice of the gradient of the global loss. Every rank computes the same global loss, so each
rank's parameter gradient is its share of the exact full-batch gradient, and summing them
(:func:`sum_gradients`) gives exactly the single-process gradient. Gradients are synchronised once
per optimizer step, which is what GradCache's repeated re-forward passes need (DDP's hook-based
bucketing would synchronise after every micro-batch).
"""

from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); False if not launched so."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        rank, size = world()
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(size)]
        dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
        counts = [int(s) for s in sizes]
        biggest = max(counts)
        padded = torch.zeros((biggest, *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded.contiguous())
        ctx.offset, ctx.count = sum(counts[:rank]), counts[rank]
        return torch.cat([p[:c] for p, c in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad[ctx.offset : ctx.offset + ctx.count]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows (ranks may hold different counts); gradient flows to this rank's rows."""
    if world()[1] == 1:
        return x
    return _GatherWithGrad.apply(x)


def gather_objects(obj: object) -> list:
    """Every rank's Python object, in rank order."""
    size = world()[1]
    if size == 1:
        return [obj]
    out: list = [None] * size
    dist.all_gather_object(out, obj)
    return out


def sum_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum gradients over ranks (one flattened all-reduce)."""
    if world()[1] == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(params: Iterable[torch.Tensor]) -> None:
    """Start every rank from rank 0's weights (randomly initialised heads differ otherwise)."""
    if world()[1] == 1:
        return
    for p in params:
        dist.broadcast(p.data, src=0)


def is_main() -> bool:
    return world()[0] == 0
