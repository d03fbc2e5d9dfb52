"""The grid's ``frozen`` screen: the backbone is frozen and runs once per text and attention mode; every
design trains the same trainable mechanism on top of the cached features.

:class:`CachedFeatureSource` is a chain source (the protocol of :class:`~embedlab.models.Backbone`):
it tokenizes with the backbone, and for each row it serves the last layer's token states and one
summary per hidden layer under each rule (last token, masked mean), computed once with the live
backbone (bf16 where it is native, else fp32) and kept in bf16. Designs therefore run their real chain, ``source -> head -> projection ->
normalize``, through the same :meth:`Embedder.encode`, trainer and batching helpers as a live model.

Fairness: every design, the baseline included, gets the same identity-initialised ``d x d`` linear
projection after pooling, trained with the same data, steps and seed; trainable heads add their own
parameters (reported, and marked when more than the baseline's). This is *not* the headline paper's
protocol (LoRA on the backbone); reports say so.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from embedlab.errors import ConfigError
from embedlab.models.backbone import Backbone
from embedlab.models.batching import pad_batch, token_budget_batches
from embedlab.models.embedder import DTYPES, low_precision_cpu_attention, resolve_dtype
from embedlab.models.features import LAYER_SUMMARIES, exclude_prefix, summarize
from embedlab.models.modules import Module

FROZEN_NOTE = (
    "frozen mode: the backbone is frozen; every design (the baseline too) trains the same identity-initialised "
    "linear projection after pooling, plus its head's own parameters, on cached features: a fast screen, "
    "NOT the paper's protocol (LoRA on the backbone)"
)

_Key = tuple[tuple[int, ...], int]


class CachedFeatureSource(Module):
    """A frozen backbone behind a per-row cache: ``(token ids, prompt length) -> states``."""

    kind = "cached_features"
    is_source = True
    caches_features = True

    def __init__(
        self,
        backbone: Backbone,
        *,
        dtype: str = "auto",
        storage_dtype: torch.dtype = torch.bfloat16,
        compute_batch: int = 64,
        token_budget: int = 2048,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.compute_dtype = DTYPES[resolve_dtype(dtype, next(backbone.parameters()).device)]  # bf16 only where native
        self.dtype = storage_dtype
        self.compute_batch, self.token_budget = compute_batch, token_budget
        self._tokens: dict[_Key, torch.Tensor] = {}  # (T, d) last-layer states of the real tokens
        self._layers: dict[_Key, torch.Tensor] = {}  # (R, L, d): one summary per rule per layer
        self.computed = 0

    # -- the source protocol, delegated to the backbone ------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name in (
            "tokenizer",
            "max_length",
            "append_eos",
            "padding_side",
            "hidden_size",
            "num_layers",
            "is_decoder",
            "attention",
            "config",
            "source",
            "num_parameters",
        ):
            return getattr(self._modules["backbone"], name)
        return super().__getattr__(name)

    def tokenize(self, texts: Sequence[str], prompts: Sequence[str] | str | None = None) -> Any:
        return self.backbone.tokenize(texts, prompts)

    def __len__(self) -> int:
        return len(self._tokens)

    def save(self, path: Any) -> None:
        """Refused: the cache is a screening device, not a model (the grid saves the head and projection)."""
        raise ConfigError(
            "a cached-feature source cannot be saved as a model; save the head and projection modules, "
            "or train the design with --mode lora"
        )

    # -- features ----------------------------------------------------------------------------------
    def _compute(self, keys: list[_Key]) -> None:
        bb = self.backbone
        device = next(bb.parameters()).device
        was_training = bb.training
        bb.eval()
        try:
            low = self.compute_dtype != torch.float32
            with (
                torch.no_grad(),
                torch.autocast(device_type=device.type, dtype=self.compute_dtype, enabled=low),
                low_precision_cpu_attention(bb, device, low),
            ):
                for batch in token_budget_batches([len(ids) for ids, _ in keys], self.token_budget, self.compute_batch):
                    chunk = [keys[i] for i in batch]  # length-sorted under a token budget: little padding
                    input_ids, mask = pad_batch(
                        [list(ids) for ids, _ in chunk], bb.tokenizer.pad_token_id, bb.padding_side
                    )
                    input_ids, mask = input_ids.to(device), mask.to(device)
                    plen = torch.tensor([n for _, n in chunk], device=device)
                    out = bb({"input_ids": input_ids, "attention_mask": mask}, output_hidden_states=True)
                    pool = exclude_prefix(mask, plen)
                    layers = torch.stack(
                        [
                            torch.stack([summarize(h, rule, mask, pool) for h in out["hidden_states"]], dim=1)
                            for rule in LAYER_SUMMARIES
                        ],
                        dim=1,
                    )  # (B, R, L, d)
                    for row, key in enumerate(chunk):
                        keep = mask[row].bool()
                        self._tokens[key] = out["token_embeddings"][row][keep].to(self.dtype).cpu().clone()
                        self._layers[key] = layers[row].to(self.dtype).cpu().clone()
                    self.computed += len(chunk)
        finally:
            bb.train(was_training)

    def forward(self, features: dict[str, Any], output_hidden_states: bool = False) -> dict[str, Any]:
        ids, mask = features["input_ids"], features["attention_mask"]
        plen = features.get("prompt_length")
        rows = mask.bool()
        keys: list[_Key] = [
            (tuple(ids[i][rows[i]].tolist()), int(plen[i]) if plen is not None else 0) for i in range(ids.shape[0])
        ]
        missing = list(dict.fromkeys(k for k in keys if k not in self._tokens))
        if missing:
            self._compute(missing)
        device = ids.device
        b, t = ids.shape
        d = self.backbone.hidden_size
        tokens = torch.zeros(b, t, d, device=device)
        for i, key in enumerate(keys):
            tokens[i, rows[i]] = self._tokens[key].to(device=device, dtype=torch.float32)
        layers = torch.stack([self._layers[k] for k in keys]).to(device=device, dtype=torch.float32)
        features["token_embeddings"] = tokens
        features["layer_summaries"] = {rule: layers[:, r] for r, rule in enumerate(LAYER_SUMMARIES)}
        features["pool_mask"] = mask if plen is None else exclude_prefix(mask, plen)
        return features
