"""The grid's ``frozen`` screening mode: run the frozen backbone once per attention mode, keep what the
pooling heads read, and train only the heads on those cached features.

Per text it keeps the last layer's token states and one summary per hidden layer (the last token under
causal attention, the masked mean under bidirectional — what the multi-layer head reads), in bf16.
Every head of one attention mode then trains and evaluates on the same cached features, so the
backbone runs once per attention mode instead of once per design and step. This is *not* the
headline paper's protocol (the backbone is not adapted with LoRA); reports say so.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from embedlab.models.batching import pad_batch, token_budget_batches
from embedlab.models.embedder import low_precision_cpu_attention
from embedlab.models.pooling import gather_positions, last_token_index, masked_mean
from embedlab.train.trainer import Trainer

FROZEN_NOTE = ("frozen mode: the backbone is frozen and only the pooling heads are trained on cached features; "
               "this is a fast screen, NOT the paper's protocol (LoRA on the backbone)")


class FeatureCache:
    """Backbone features of texts under one attention mode, computed once (bf16 autocast on CPU)."""

    def __init__(self, embedder: Any, *, dtype: torch.dtype = torch.bfloat16, token_budget: int = 2048) -> None:
        self.embedder = embedder
        self.dtype = dtype
        self.token_budget = token_budget
        self.summary = "last_token" if embedder.attention == "causal" else "mean"
        self.tokens: dict[str, torch.Tensor] = {}  # text -> (T, d) last-layer states
        self.layers: dict[str, torch.Tensor] = {}  # text -> (L, d) per-layer summaries
        self.truncated = 0
        for p in embedder.backbone.parameters():
            p.requires_grad_(False)

    def __len__(self) -> int:
        return len(self.tokens)

    def add(self, texts: Sequence[str], progress: bool = False) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self.tokens]
        if not todo:
            return
        emb = self.embedder
        ids, truncated = emb.tokenize(todo)
        self.truncated += truncated
        device = next(emb.parameters()).device
        from tqdm.auto import tqdm

        was_training = emb.training
        emb.eval()
        try:
            with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=self.dtype), \
                    low_precision_cpu_attention(emb.backbone.model, device, True), tqdm(total=len(todo), desc=f"backbone ({emb.attention})", unit="text", disable=not progress, file=sys.stderr) as bar:
                for batch in token_budget_batches([len(x) for x in ids], self.token_budget, 64):
                    input_ids, mask = pad_batch([ids[i] for i in batch], emb.tokenizer.pad_token_id, emb.padding_side)
                    input_ids, mask = input_ids.to(device), mask.to(device)
                    out = emb.backbone(input_ids, mask, output_hidden_states=True)
                    hidden = out["hidden_states"]
                    if self.summary == "last_token":
                        index = last_token_index(mask)
                        layers = torch.stack([gather_positions(h.float(), index) for h in hidden], dim=1)
                    else:
                        layers = torch.stack([masked_mean(h.float(), mask) for h in hidden], dim=1)
                    last = out["token_embeddings"]
                    for row, i in enumerate(batch):
                        keep = mask[row].bool()
                        self.tokens[todo[i]] = last[row][keep].to(self.dtype).cpu().clone()
                        self.layers[todo[i]] = layers[row].to(self.dtype).cpu().clone()
                    bar.update(len(batch))
        finally:
            emb.train(was_training)

    def features(self, texts: Sequence[str]) -> dict[str, Any]:
        """The features dict a head reads, for a batch of cached texts (float32, padded)."""
        self.add(texts)
        states = [self.tokens[t] for t in texts]
        longest = max(len(s) for s in states)
        d = states[0].shape[1]
        token_embeddings = torch.zeros(len(texts), longest, d)
        mask = torch.zeros(len(texts), longest, dtype=torch.long)
        left = self.embedder.padding_side == "left"
        for i, s in enumerate(states):
            if left:
                token_embeddings[i, longest - len(s):] = s.float()
                mask[i, longest - len(s):] = 1
            else:
                token_embeddings[i, : len(s)] = s.float()
                mask[i, : len(s)] = 1
        layers = torch.stack([self.layers[t].float() for t in texts])
        device = next(self.embedder.parameters()).device
        token_embeddings, mask, layers = token_embeddings.to(device), mask.to(device), layers.to(device)
        return {"token_embeddings": token_embeddings, "attention_mask": mask, "pool_mask": mask, "layer_summaries": layers}

    def encode(self, head: torch.nn.Module, texts: list[str], prompt: str = "", batch_size: int = 256,
               normalize: bool = True) -> np.ndarray:
        """Embeddings of ``prompt + text`` through ``head`` (inference)."""
        full = [prompt + t for t in texts] if prompt else list(texts)
        self.add(full, progress=len(full) >= 256 and sys.stderr.isatty())
        out = []
        was_training = head.training
        head.eval()
        device = next(self.embedder.parameters()).device
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=self.dtype):
            for i in range(0, len(full), batch_size):
                v = head(self.features(full[i : i + batch_size])).float()
                out.append((F.normalize(v, dim=-1) if normalize else v).cpu())
        head.train(was_training)
        return torch.cat(out).numpy()


class FrozenHeadTrainer(Trainer):
    """The trainer with texts embedded from the feature cache: only the head learns."""

    def __init__(self, config: Any, embedder: Any, cache: FeatureCache, **kwargs: Any) -> None:
        self.cache = cache
        super().__init__(config, embedder, **kwargs)

    def embed(self, texts: list[str]) -> torch.Tensor:
        features = self.cache.features(texts)  # computes the features of new texts
        self._count(int(features["attention_mask"].sum()))
        with self._autocast():
            return self.embedder.head(features).float()

    def _check_memory(self, stage: Any, examples: Any) -> int:
        return 0  # heads on cached features: a few MB
