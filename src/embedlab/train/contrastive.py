"""In-batch InfoNCE training of an Embedder, with an optional Matryoshka loss.

Written by hand rather than with sentence-transformers' MultipleNegativesRankingLoss/MatryoshkaLoss
because embedlab's trainable pooling heads are not sentence-transformers modules; the arithmetic is
the same (cosine x scale, cross-entropy on the diagonal; Σ_m c_m·L(f(x)[:m]) for Matryoshka,
Kusupati et al. 2022) and is tested against a brute-force computation.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from embedlab.errors import EmbedlabError, InputError
from embedlab.io import atomic_path
from embedlab.models.batching import pad_batch
from embedlab.train.config import TrainConfig

log = logging.getLogger(__name__)


def info_nce(q: torch.Tensor, d: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Mean over queries of -log softmax(cos(q_i, d_j)/τ)_ii: every other positive is a negative."""
    logits = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def contrastive_loss(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor | None = None, *, temperature: float = 0.05,
                     in_batch: bool = True, symmetric: bool = False, false_negative_mask: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE of queries q (B, d) against their positives p (B, d) and hard negatives n (B, k, d).

    ``in_batch=True``: every query competes against all B positives and all B·k negatives (the
    candidates per query are B·(1+k)); ``False`` (NV-Embed stage 2): only its own positive and its own
    k negatives. ``false_negative_mask`` (B, candidates) marks candidates to ignore (e.g. a text equal to
    the query's positive); ``symmetric`` adds the positives -> queries term.
    """
    qn, pn = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    b = len(q)
    if in_batch:
        cands = pn if n is None else torch.cat([pn, F.normalize(n, dim=-1).reshape(-1, q.shape[1])])
        logits = qn @ cands.T / temperature
        labels = torch.arange(b, device=q.device)
    else:
        cands = pn.unsqueeze(1) if n is None else torch.cat([pn.unsqueeze(1), F.normalize(n, dim=-1)], dim=1)
        logits = torch.einsum("bd,bcd->bc", qn, cands) / temperature
        labels = torch.zeros(b, dtype=torch.long, device=q.device)
    if false_negative_mask is not None:
        if false_negative_mask.shape != logits.shape:
            raise EmbedlabError(f"false_negative_mask has shape {tuple(false_negative_mask.shape)}, expected {tuple(logits.shape)}")
        keep = torch.zeros_like(false_negative_mask)
        keep[torch.arange(b), labels] = True  # the positive itself is never masked
        logits = logits.masked_fill(false_negative_mask & ~keep, float("-inf"))
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = (loss + F.cross_entropy(pn @ qn.T / temperature, torch.arange(b, device=q.device))) / 2
    return loss


def matryoshka_info_nce(q: torch.Tensor, d: torch.Tensor, dims: Sequence[int], weights: Sequence[float] | None = None,
                        temperature: float = 0.05, **loss_kwargs: Any) -> torch.Tensor:
    """Σ_m w_m · InfoNCE(q[:, :m], d[:, :m]) over nested prefix sizes m (each prefix renormalised).
    ``loss_kwargs`` (hard negatives ``n``, ``in_batch``, ...) go to :func:`contrastive_loss`."""
    weights = list(weights) if weights is not None else [1.0] * len(dims)
    if len(weights) != len(dims):
        raise EmbedlabError("matryoshka_weights must have one weight per dimension")
    if max(dims) > q.shape[1]:
        raise EmbedlabError(f"a Matryoshka dimension ({max(dims)}) exceeds the embedding size ({q.shape[1]})")
    n = loss_kwargs.pop("n", None)
    return sum(w * contrastive_loss(q[:, :m], d[:, :m], None if n is None else n[..., :m], temperature=temperature, **loss_kwargs)
               for m, w in zip(dims, weights))


def load_examples(spec: str) -> list[tuple[str, str, list[str]]]:
    """(query, positive, negatives) from JSONL (``query``/``positive``/``negatives``), TSV (query,
    positive, then negatives) or the adapter ``stsb-pairs`` (STS-B train pairs scored >= 4)."""
    if spec == "stsb-pairs":
        from embedlab.eval.data import read_tsv
        from embedlab.settings import data_dir

        root = data_dir()
        if root is None:
            raise EmbedlabError("the stsb-pairs adapter needs the shared data directory (EMBEDLAB_DATA)")
        rows = read_tsv(Path(root) / "stsbenchmark" / "train.tsv", ("sentence1", "sentence2", "score"))
        return [(r["sentence1"], r["sentence2"], []) for r in rows if float(r["score"]) >= 4.0]
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"training data not found: {spec} (a file, or the adapter stsb-pairs)")
    examples = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            q, p, negs = obj.get("query"), obj.get("positive"), obj.get("negatives") or []
        else:
            cells = line.split("\t")
            q, p, negs = (cells + [None])[0], (cells + [None])[1], [c for c in cells[2:] if c]
        if not q or not p:
            raise InputError(f"{path}:{n}: empty or missing query/positive")
        if not isinstance(negs, list) or not all(isinstance(x, str) and x for x in negs):
            raise InputError(f"{path}:{n}: negatives must be a list of non-empty strings")
        examples.append((q, p, negs))
    if len(examples) < 2:
        raise InputError(f"{path}: need at least two examples for in-batch negatives")
    return examples


def load_pairs(spec: str) -> list[tuple[str, str]]:
    """(query, positive) pairs of :func:`load_examples`."""
    return [(q, p) for q, p, _ in load_examples(spec)]


def _false_negative_mask(positives: list[str], negatives: list[str], k: int, in_batch: bool) -> torch.Tensor:
    """True where a candidate's text equals the query's positive (a false negative), per query row."""
    if in_batch:
        cands = positives + negatives
        return torch.tensor([[c == pos for c in cands] for pos in positives], dtype=torch.bool)
    return torch.tensor([[False] + [negatives[i * k + m] == pos for m in range(k)] for i, pos in enumerate(positives)], dtype=torch.bool)


def _embed(embedder: Any, texts: list[str]) -> torch.Tensor:
    ids, _ = embedder.tokenize(texts)
    input_ids, mask = pad_batch(ids, embedder.tokenizer.pad_token_id, embedder.padding_side)
    device = next(embedder.parameters()).device
    return embedder.head(embedder.forward_features(input_ids.to(device), mask.to(device)))  # un-normalised, full width


def train(embedder: Any, pairs: Sequence[tuple[str, str] | tuple[str, str, list[str]]], config: TrainConfig,
          log_path: Path | None = None) -> list[float]:
    """Full fine-tuning with AdamW, warmup then linear decay; returns the per-step losses."""
    k = config.hard_negatives
    examples = [(e[0], e[1], list(e[2]) if len(e) > 2 else []) for e in pairs]  # type: ignore[misc]
    short = next((i for i, e in enumerate(examples) if len(e[2]) < k), None)
    if short is not None:
        raise InputError(f"example {short} has {len(examples[short][2])} negatives; the config asks for hard_negatives={k}")
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.matryoshka_dims and max(config.matryoshka_dims) > embedder.head.output_dim:
        raise EmbedlabError(f"matryoshka_dims {config.matryoshka_dims} exceed the embedding size {embedder.head.output_dim}")
    params = [p for p in embedder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, config.warmup_steps)) * max(0.0, 1 - s / config.steps)
        if config.warmup_steps else max(0.0, 1 - s / config.steps))
    order = list(range(len(examples)))
    rng = random.Random(config.seed)
    losses, cursor = [], len(order)
    embedder.train()
    from tqdm.auto import tqdm

    with tqdm(total=config.steps, desc="train", unit="step") as bar:
        for step in range(config.steps):
            if cursor + config.batch_size > len(order):
                rng.shuffle(order)
                cursor = 0
            batch = [examples[i] for i in order[cursor : cursor + config.batch_size]]
            cursor += config.batch_size
            start = time.perf_counter()
            q = _embed(embedder, [b[0] for b in batch])
            d = _embed(embedder, [b[1] for b in batch])
            neg_texts = [x for b in batch for x in b[2][:k]]
            n = _embed(embedder, neg_texts).reshape(len(batch), k, -1) if k else None
            kwargs: dict[str, Any] = {"n": n, "in_batch": config.in_batch_negatives, "symmetric": config.symmetric}
            if config.mask_false_negatives:
                kwargs["false_negative_mask"] = _false_negative_mask([b[1] for b in batch], neg_texts, k, config.in_batch_negatives)
            if config.matryoshka_dims:
                loss = matryoshka_info_nce(q, d, config.matryoshka_dims, config.matryoshka_weights, config.temperature, **kwargs)
            else:
                loss = contrastive_loss(q, d, temperature=config.temperature, **kwargs)
            if not torch.isfinite(loss):
                raise EmbedlabError(f"the loss became {loss.item()} at step {step}: lower the learning rate")
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}", pairs_per_s=f"{len(batch) / (time.perf_counter() - start):.1f}")
            bar.update(1)
            if log_path is not None and (step % config.log_every == 0 or step == config.steps - 1):
                with open(log_path, "a") as f:
                    f.write(json.dumps({"step": step, "loss": losses[-1], "lr": schedule.get_last_lr()[0]}) + "\n")
    embedder.eval()
    return losses


def run(config: TrainConfig) -> Any:
    """Load the model, train, save the embedder with its config and log (atomically). Returns it."""
    from embedlab.models import Embedder

    embedder = Embedder.from_pretrained(config.model, pooling=config.pooling, attention=config.attention, max_length=config.max_length)
    pairs = load_examples(config.data)
    out = Path(config.output)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        log_path = tmp / "train_log.jsonl"
        train(embedder, pairs, config, log_path)
        model_dir = tmp / "model"
        embedder.save(model_dir)
        (tmp / "train_config.json").write_text(config.model_dump_json(indent=2) + "\n")
    return embedder
