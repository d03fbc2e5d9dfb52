"""Contrastive losses: InfoNCE with in-batch and hard negatives, per-row in-batch switch, false-negative
masking, a symmetric term, and Matryoshka nesting.

Written by hand rather than with sentence-transformers' MultipleNegativesRankingLoss/MatryoshkaLoss
because those take sentence-transformers modules and texts, not embedlab's pooling heads and cached
representations (GradCache, cross-process gathering); the arithmetic is the same (cosine x scale,
cross-entropy on the positive) and is tested against a brute-force computation.

Layout: for B queries the candidates are the B positives followed by N hard negatives (any number per
query; ``owner[j]`` says whose negative column B+j is). A query row that uses in-batch negatives sees
every candidate; one that does not (NV-Embed stage 2 for non-retrieval data) sees only its own
positive and its own negatives. The symmetric term (positive j -> the B queries) uses the transpose
of the query -> positive visibility: the same in-batch switch and false-negative mask.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from embedlab.errors import EmbedlabError


def info_nce(q: torch.Tensor, d: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Mean over queries of -log softmax(cos(q_i, d_j)/τ)_ii: every other positive is a negative."""
    logits = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def candidate_mask(batch: int, owner: torch.Tensor, in_batch: bool | torch.Tensor) -> torch.Tensor:
    """(B, B+N) True where a query row may see a candidate."""
    n = len(owner)
    device = owner.device
    rows = torch.arange(batch, device=device)
    own = torch.cat([rows.unsqueeze(1) == rows.unsqueeze(0), rows.unsqueeze(1) == owner.unsqueeze(0)], dim=1)
    flag = torch.as_tensor(in_batch, dtype=torch.bool, device=device)
    if flag.dim() == 0:
        flag = flag.expand(batch)
    if flag.shape != (batch,):
        raise EmbedlabError(f"in_batch must be a bool or one bool per query ({batch}), got shape {tuple(flag.shape)}")
    return own | flag.unsqueeze(1).expand(batch, batch + n)


def contrastive_loss_flat(
    q: torch.Tensor,
    p: torch.Tensor,
    negatives: torch.Tensor | None = None,
    owner: torch.Tensor | None = None,
    *,
    temperature: float = 0.05,
    in_batch: bool | torch.Tensor = True,
    symmetric: bool = False,
    false_negative_mask: torch.Tensor | None = None,
    similarity: str = "cosine",
) -> tuple[torch.Tensor, float]:
    """InfoNCE of q (B, d) against positives p (B, d) and negatives (N, d) owned by ``owner`` (N,).
    ``similarity="dot"`` scores raw dot products (SPLADE; use temperature 1), ``"cosine"`` normalises first.
    Returns the loss and the mean number of candidates each query competed against."""
    b, d = q.shape
    if p.shape != q.shape:
        raise EmbedlabError(f"queries {tuple(q.shape)} and positives {tuple(p.shape)} differ in shape")
    if negatives is None:
        negatives, owner = q.new_zeros(0, d), torch.zeros(0, dtype=torch.long, device=q.device)
    if owner is None or len(owner) != len(negatives):
        raise EmbedlabError("every negative needs an owner (the index of its query)")
    if similarity not in ("cosine", "dot"):
        raise EmbedlabError(f"similarity must be cosine or dot; got {similarity!r}")
    unit = (lambda x: F.normalize(x, dim=-1)) if similarity == "cosine" else (lambda x: x)  # noqa: E731
    qn, pn = unit(q), unit(p)
    cands = torch.cat([pn, unit(negatives)])
    logits = qn @ cands.T / temperature
    visible = candidate_mask(b, owner.to(q.device), in_batch)
    if false_negative_mask is not None:
        if false_negative_mask.shape != logits.shape:
            raise EmbedlabError(
                f"false_negative_mask has shape {tuple(false_negative_mask.shape)}, expected {tuple(logits.shape)}"
            )
        diagonal = torch.zeros_like(visible)
        diagonal[torch.arange(b), torch.arange(b)] = True  # the positive itself is never masked
        visible = visible & ~(false_negative_mask.to(q.device) & ~diagonal)
    logits = logits.masked_fill(~visible, float("-inf"))
    labels = torch.arange(b, device=q.device)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        # positives -> queries: positive j may see query i exactly when query i may see positive j (the
        # in-batch switch and the false-negative mask, transposed); its own query is always visible
        back = (pn @ qn.T / temperature).masked_fill(~visible[:, :b].T, float("-inf"))
        loss = (loss + F.cross_entropy(back, labels)) / 2
    return loss, float(visible.sum(dim=1).float().mean())


def flops(x: torch.Tensor) -> torch.Tensor:
    """The FLOPS regulariser of a batch of sparse vectors (Paria et al. 2020; SPLADE): Σ_j (mean_i |x_ij|)²."""
    return x.abs().mean(dim=0).pow(2).sum()


def flops_weight(weight: float, step: int, warmup_steps: int) -> float:
    """SPLADE's quadratic warm-up of a FLOPS weight: ``weight · (step / T)²`` until step T, then ``weight``."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return weight
    return weight * (step / warmup_steps) ** 2


def flops_penalty(
    q: torch.Tensor, p: torch.Tensor, negatives: torch.Tensor | None, query_weight: float, document_weight: float
) -> torch.Tensor:
    """``λ_q·FLOPS(queries) + λ_d·FLOPS(documents)``, the document term the mean of the positives' and the
    negatives' FLOPS as naver/splade's trainer takes it (two batch means; the positives' alone without negatives)."""
    docs = flops(p) if negatives is None or not len(negatives) else (flops(p) + flops(negatives)) / 2
    return query_weight * flops(q) + document_weight * docs


def _flatten(n: torch.Tensor | None, q: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(B, k, d) per-query negatives -> the flat layout: (B·k, d) negatives and their owners."""
    if n is None:
        return None, None
    return n.reshape(-1, q.shape[1]), torch.arange(len(q), device=q.device).repeat_interleave(n.shape[1])


def contrastive_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    n: torch.Tensor | None = None,
    *,
    temperature: float = 0.05,
    in_batch: bool | torch.Tensor = True,
    symmetric: bool = False,
    false_negative_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE of queries q (B, d) against their positives p (B, d) and k hard negatives each n (B, k, d).

    ``in_batch=True``: every query competes against all B positives and all B·k negatives (B·(1+k)
    candidates); ``False``: only its own positive and its own k negatives. ``false_negative_mask``
    (B, B+B·k) marks candidates to ignore; ``symmetric`` adds the positives -> queries term.
    """
    return contrastive_loss_flat(
        q,
        p,
        *_flatten(n, q),
        temperature=temperature,
        in_batch=in_batch,
        symmetric=symmetric,
        false_negative_mask=false_negative_mask,
    )[0]


def matryoshka_info_nce(
    q: torch.Tensor,
    d: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
    temperature: float = 0.05,
    **loss_kwargs: Any,
) -> torch.Tensor:
    """Σ_m w_m · InfoNCE(q[:, :m], d[:, :m]) over nested prefix sizes m (each prefix renormalised;
    Kusupati et al. 2022). ``loss_kwargs`` (hard negatives ``n``, ``in_batch``, ...) go to
    :func:`contrastive_loss`."""
    return matryoshka_flat(
        q, d, *_flatten(loss_kwargs.pop("n", None), q), dims, weights, temperature=temperature, **loss_kwargs
    )[0]


def matryoshka_flat(
    q: torch.Tensor,
    p: torch.Tensor,
    negatives: torch.Tensor | None,
    owner: torch.Tensor | None,
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, float]:
    weights = list(weights) if weights is not None else [1.0] * len(dims)
    if len(weights) != len(dims):
        raise EmbedlabError("matryoshka_weights must have one weight per dimension")
    if max(dims) > q.shape[1]:
        raise EmbedlabError(f"a Matryoshka dimension ({max(dims)}) exceeds the embedding size ({q.shape[1]})")
    total, cands = 0.0, 0.0
    for m, w in zip(dims, weights):
        loss, cands = contrastive_loss_flat(
            q[:, :m], p[:, :m], None if negatives is None else negatives[:, :m], owner, **kwargs
        )
        total = total + w * loss
    return total, cands  # type: ignore[return-value]


def false_negative_mask(queries: Sequence[str], positives: Sequence[str], negatives: Sequence[str]) -> torch.Tensor:
    """(B, B+N) True where a candidate is a false negative for a query: its text equals the query's
    positive or the query's own text (pair data with both directions, e.g. ``stsb-pairs``: a query
    appears as another row's positive or negative), or it is the positive of another row with the
    same query text (duplicate queries). The loss never masks a query's own positive (the diagonal)."""
    if len(queries) != len(positives):
        raise EmbedlabError(f"{len(queries)} queries but {len(positives)} positives")
    ids: dict[str, int] = {}  # each distinct text -> an integer; then the comparisons are tensor ops
    q, p, c = (
        torch.tensor([ids.setdefault(t, len(ids)) for t in texts], dtype=torch.long)
        for texts in (queries, positives, list(positives) + list(negatives))
    )
    b = len(positives)
    mask = (c.unsqueeze(0) == p.unsqueeze(1)) | (c.unsqueeze(0) == q.unsqueeze(1))
    same_query = (q.unsqueeze(0) == q.unsqueeze(1)) & ~torch.eye(b, dtype=torch.bool)
    mask[:, :b] |= same_query
    return mask.reshape(b, len(c))
