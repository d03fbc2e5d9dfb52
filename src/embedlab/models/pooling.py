"""Pooling heads: token (or per-layer) states -> one vector per text.

Each head is a small ``nn.Module`` that owns its config and its save/load, in the spirit of
sentence-transformers modules. Plain heads (cls, mean, weighted_mean, last_token) are saved in
sentence-transformers' own ``Pooling`` format so that ``SentenceTransformer(path)`` loads them; the
trainable heads (latent_attention, multi_layer) are saved as ``config.json`` + ``model.safetensors``.

Every head reads a ``features`` dict:

* ``token_embeddings`` (B, T, d): last-layer token states;
* ``attention_mask`` (B, T): 1 for real tokens, 0 for padding (either padding side);
* ``pool_mask`` (B, T): ``attention_mask`` with instruction/prompt tokens zeroed where the head
  excludes them (never empty: the embedder falls back to ``attention_mask`` for such rows);
* ``hidden_states``: the L per-layer states (B, T, d), layers 1..L (the embedding output is excluded;
  the last one is post-final-norm), only for heads with ``needs_hidden_states``.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from embedlab.errors import PoolingError
from embedlab.io import atomic_path, read_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


# ---------------------------------------------------------------------------------------------
# Mask helpers (correct under left and right padding)
# ---------------------------------------------------------------------------------------------
def first_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real token of each row."""
    return mask.to(torch.int32).argmax(dim=1)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row."""
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
    out = mask * (position > prefix_lengths.unsqueeze(1)).to(mask.dtype)
    empty = out.sum(dim=1) == 0
    if bool(empty.any()):
        out[empty] = mask[empty]
    return out


# ---------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------
class PoolingHead(nn.Module):
    """Base class: subclasses set ``name`` and implement ``forward(features) -> (B, out_dim)``."""

    name: ClassVar[str]
    trainable: ClassVar[bool] = False
    needs_hidden_states: ClassVar[bool] = False
    supports_exclude_instruction: ClassVar[bool] = False
    needs_cls_token: ClassVar[bool] = False
    st_pooling_mode: ClassVar[str | None] = None  # sentence-transformers' name for plain heads
    description: ClassVar[str] = ""

    def __init__(self, dim: int, exclude_instruction: bool = False) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim <= 0:
            raise PoolingError(f"{self.name}: dim must be a positive integer, got {dim!r}")
        if exclude_instruction and not self.supports_exclude_instruction:
            raise PoolingError(
                f"pooling '{self.name}' cannot exclude instruction tokens "
                "(only mean-type heads can: mean, weighted_mean, latent_attention, multi_layer with mean summary)"
            )
        self.dim = dim
        self.exclude_instruction = bool(exclude_instruction)

    @property
    def output_dim(self) -> int:
        return self.dim

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.dim, "exclude_instruction": self.exclude_instruction}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- save / load ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write this head into directory ``path`` (atomically)."""
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            if self.st_pooling_mode is not None:
                config = {
                    "embedding_dimension": self.dim,
                    "pooling_mode": self.st_pooling_mode,
                    "include_prompt": not self.exclude_instruction,
                }
            else:
                config = {"embedlab_pooling": self.name, **self.get_config()}
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
            if self.trainable:
                state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
                save_file(state, str(tmp / WEIGHTS_NAME))

    @staticmethod
    def load(path: str | Path) -> "PoolingHead":
        """Load any head saved by :meth:`save` (or a sentence-transformers ``Pooling`` folder)."""
        path = Path(path)
        config = read_json(path / CONFIG_NAME, PoolingError, "pooling config")
        head = head_from_config(config)
        if head.trainable:
            weights = path / WEIGHTS_NAME
            if not weights.is_file():
                raise PoolingError(f"pooling weights missing: {weights}")
            try:
                state = load_file(str(weights))
            except Exception as exc:  # safetensors raises its own error types for corrupt files
                raise PoolingError(f"pooling weights {weights} are corrupt: {exc}") from None
            head.load_state_dict(state)
        return head

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.get_config().items())


# ---------------------------------------------------------------------------------------------
# Plain heads
# ---------------------------------------------------------------------------------------------
class CLSPooling(PoolingHead):
    name = "cls"
    st_pooling_mode = "cls"
    needs_cls_token = True
    description = "state of the first ([CLS]) token; encoders only (BERT)"

    def forward(self, features: dict[str, Any]) -> torch.Tensor:
        x = features["token_embeddings"]
        return gather_positions(x, first_token_index(features["attention_mask"]))


class MeanPooling(PoolingHead):
    name = "mean"
    st_pooling_mode = "mean"
    supports_exclude_instruction = True
    description = "masked mean of the last-layer token states (Sentence-BERT)"

    def forward(self, features: dict[str, Any]) -> torch.Tensor:
        return masked_mean(features["token_embeddings"], features["pool_mask"])


class WeightedMeanPooling(PoolingHead):
    name = "weighted_mean"
    st_pooling_mode = "weightedmean"
    supports_exclude_instruction = True
    description = "position-weighted mean, weight i for the i-th real token (SGPT, Muennighoff 2022)"

    def forward(self, features: dict[str, Any]) -> torch.Tensor:
        x = features["token_embeddings"]
        mask = features["attention_mask"]
        positions = mask.to(x.dtype).cumsum(dim=1)  # 1..n from the first real token, any padding side
        weights = (positions * features["pool_mask"].to(x.dtype)).unsqueeze(-1)
        return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class LastTokenPooling(PoolingHead):
    name = "last_token"
    st_pooling_mode = "lasttoken"
    description = "state of the last real token (EOS when appended; the headline paper's baseline)"

    def forward(self, features: dict[str, Any]) -> torch.Tensor:
        x = features["token_embeddings"]
        return gather_positions(x, last_token_index(features["attention_mask"]))


# ---------------------------------------------------------------------------------------------
# Trainable heads
# ---------------------------------------------------------------------------------------------
class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gates = x.chunk(2, dim=-1)
        return x * F.gelu(gates)


class FeedForward(nn.Module):
    """Linear(d, 2·m·d) -> GEGLU -> Linear(m·d, d), as in both papers' heads (m = ff_mult)."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossAttention(nn.Module):
    """Multi-head cross-attention with pre-LayerNorm on the query and context sides, no mask."""

    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.norm_q = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """queries (B, Nq, d), context (B, Nc, d) -> (B, Nq, d) (the residual is added by the caller)."""
        b, nq, _ = queries.shape
        q = self.to_q(self.norm_q(queries))
        k, v = self.to_kv(self.norm_ctx(context)).chunk(2, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.to_out(out.transpose(1, 2).reshape(b, nq, self.num_heads * self.head_dim))


def _resolve_widths(dim: int, num_heads: int, head_dim: int | None, name: str) -> int:
    if num_heads <= 0:
        raise PoolingError(f"{name}: num_heads must be positive, got {num_heads}")
    if head_dim is None:
        if dim % num_heads:
            raise PoolingError(f"{name}: dim {dim} is not divisible by num_heads {num_heads}; set head_dim")
        head_dim = dim // num_heads
    if head_dim <= 0:
        raise PoolingError(f"{name}: head_dim must be positive, got {head_dim}")
    return head_dim


class _LatentHead(PoolingHead):
    """Shared parts of the trainable heads: a latent array and one pre-norm cross-attention + GEGLU block."""

    trainable = True

    def _build_block(self, dim: int, num_latents: int, num_heads: int, head_dim: int | None, ff_mult: int) -> None:
        if num_latents <= 0 or ff_mult <= 0:
            raise PoolingError(f"{self.name}: num_latents and ff_mult must be positive")
        self.num_latents, self.num_heads, self.ff_mult = num_latents, num_heads, ff_mult
        self.head_dim = _resolve_widths(dim, num_heads, head_dim, self.name)
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.attn = CrossAttention(dim, num_heads, self.head_dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_mult)

    def _block(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``q <- q + MHA(LN(q), LN(context))``, then ``q <- q + FF(LN(q))``."""
        queries = queries + self.attn(queries, context)
        return queries + self.ff(self.norm_ff(queries))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_latents": self.num_latents,
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "ff_mult": self.ff_mult,
        }


class LatentAttentionPooling(_LatentHead):
    """NV-Embed's latent attention layer (Lee et al. 2024, §3.2).

    The token states are the queries; a trainable latent array (r latents) gives keys and values:
    ``h <- h + W_o·MHA(Q=W_q·LN(h), K,V=W_kv·LN(latents))``, then ``h <- h + FF(LN(h))`` with a GEGLU
    MLP, then a masked mean over tokens.
    """

    name = "latent_attention"
    supports_exclude_instruction = True
    description = "NV-Embed latent attention: tokens query a trainable latent array, MLP, masked mean"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "small": {"num_latents": 512, "num_heads": 8, "head_dim": None, "ff_mult": 1},
        # NV-Embed: 512 latents, 8 heads, cross_dim_head = hidden size (4096), FF 4096 -> 2·16384 -> 4096
        "paper": {"num_latents": 512, "num_heads": 8, "head_dim": "dim", "ff_mult": 4},
    }

    def __init__(
        self,
        dim: int,
        num_latents: int = 512,
        num_heads: int = 8,
        head_dim: int | None = None,
        ff_mult: int = 1,
        exclude_instruction: bool = False,
    ) -> None:
        super().__init__(dim, exclude_instruction)
        self._build_block(dim, num_latents, num_heads, head_dim, ff_mult)

    def forward(self, features: dict[str, Any]) -> torch.Tensor:
        h = features["token_embeddings"]
        h = self._block(h, self.latents.unsqueeze(0).expand(h.shape[0], -1, -1))  # tokens query the latents
        return masked_mean(h, features["pool_mask"])


class MultiLayerPooling(_LatentHead):
    """The headline paper's Multi-Layers Trainable Pooling (Tang & Yang 2024, §4).

    One summary per hidden layer (last token under causal attention, masked mean under bidirectional),
    plus a learned per-layer embedding; trainable latents cross-attend over the layer axis, then a
    GEGLU feed-forward block, then a mean over the latents.
    """

    name = "multi_layer"
    needs_hidden_states = True
    supports_exclude_instruction = True
    description = "Multi-Layers Trainable Pooling: latents cross-attend over per-layer summaries"
    SUMMARIES: ClassVar[tuple[str, ...]] = ("last_token", "mean")
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "small": {"num_latents": 32, "num_heads": 8, "head_dim": None, "ff_mult": 1},
        # paper: 768 latents, 32 heads x 2048 channels, FF d -> 8d (GEGLU) -> d
        "paper": {"num_latents": 768, "num_heads": 32, "head_dim": 2048, "ff_mult": 4},
    }

    def __init__(
        self,
        dim: int,
        num_layers: int,
        layer_summary: str = "last_token",
        num_latents: int = 32,
        num_heads: int = 8,
        head_dim: int | None = None,
        ff_mult: int = 1,
        exclude_instruction: bool = False,
    ) -> None:
        super().__init__(dim, exclude_instruction)
        if layer_summary not in self.SUMMARIES:
            raise PoolingError(f"{self.name}: layer_summary must be one of {self.SUMMARIES}, got {layer_summary!r}")
        if exclude_instruction and layer_summary != "mean":
            raise PoolingError(f"{self.name}: exclude_instruction needs layer_summary='mean'")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise PoolingError(f"{self.name}: num_layers must be a positive integer, got {num_layers!r}")
        self.num_layers, self.layer_summary = num_layers, layer_summary
        self.layer_embedding = nn.Embedding(num_layers, dim)
        self._build_block(dim, num_latents, num_heads, head_dim, ff_mult)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_layers": self.num_layers, "layer_summary": self.layer_summary}

    def summarize_layers(self, features: dict[str, Any]) -> torch.Tensor:
        """(B, L, d): one vector per hidden layer."""
        hidden = features.get("hidden_states")
        if hidden is None or len(hidden) != self.num_layers:
            got = None if hidden is None else len(hidden)
            raise PoolingError(f"{self.name}: expected {self.num_layers} hidden layers, got {got}")
        if self.layer_summary == "last_token":
            index = last_token_index(features["attention_mask"])
            return torch.stack([gather_positions(h, index) for h in hidden], dim=1)
        mask = features["pool_mask"]
        return torch.stack([masked_mean(h, mask) for h in hidden], dim=1)

    def forward(self, features: dict[str, Any]) -> torch.Tensor:
        layers = features.get("layer_summaries")
        if layers is None:
            layers = self.summarize_layers(features)
        layers = layers + self.layer_embedding.weight.unsqueeze(0)
        x = self._block(self.latents.unsqueeze(0).expand(layers.shape[0], -1, -1), layers)  # latents query the layers
        return x.mean(dim=1)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
POOLING_HEADS: dict[str, type[PoolingHead]] = {
    cls.name: cls
    for cls in (CLSPooling, MeanPooling, WeightedMeanPooling, LastTokenPooling, LatentAttentionPooling, MultiLayerPooling)
}
_ST_MODES = {cls.st_pooling_mode: cls for cls in POOLING_HEADS.values() if cls.st_pooling_mode}


def build_head(name: str, dim: int, *, num_layers: int | None = None, preset: str | None = None, **options: Any) -> PoolingHead:
    """Build a pooling head by name; ``preset`` ('small' or 'paper') fills widths for trainable heads."""
    if name not in POOLING_HEADS:
        raise PoolingError(f"unknown pooling '{name}'; choose one of: {', '.join(POOLING_HEADS)}")
    cls = POOLING_HEADS[name]
    kwargs: dict[str, Any] = {}
    presets = getattr(cls, "PRESETS", None)
    if preset is not None:
        if not presets or preset not in presets:
            raise PoolingError(f"pooling '{name}' has no preset {preset!r}" + (f"; presets: {', '.join(presets)}" if presets else ""))
        kwargs.update({k: (dim if v == "dim" else v) for k, v in presets[preset].items()})
    kwargs.update(options)
    if cls is MultiLayerPooling:
        if num_layers is None:
            raise PoolingError("multi_layer pooling needs the backbone's number of layers")
        kwargs["num_layers"] = num_layers
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "dim"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise PoolingError(f"pooling '{name}' has no option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    return cls(dim, **kwargs)


def head_from_config(config: dict[str, Any]) -> PoolingHead:
    """Rebuild a head from a saved config (embedlab's or sentence-transformers' Pooling format)."""
    config = dict(config)
    if "embedlab_pooling" in config:
        name = config.pop("embedlab_pooling")
        dim = config.pop("dim")
        return build_head(name, dim, **config)
    dim = config.get("embedding_dimension", config.get("word_embedding_dimension"))
    mode = config.get("pooling_mode")
    if mode is None:  # legacy sentence-transformers keys
        legacy = {
            "pooling_mode_cls_token": "cls",
            "pooling_mode_mean_tokens": "mean",
            "pooling_mode_weightedmean_tokens": "weightedmean",
            "pooling_mode_lasttoken": "lasttoken",
        }
        active = [v for k, v in legacy.items() if config.get(k)]
        unsupported = [k for k in ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens") if config.get(k)]
        if unsupported or len(active) > 1:
            raise PoolingError(f"unsupported sentence-transformers pooling config: {config}")
        mode = active[0] if active else "mean"
    if isinstance(mode, (list, tuple)) or mode not in _ST_MODES:
        raise PoolingError(f"unsupported sentence-transformers pooling mode {mode!r}")
    return _ST_MODES[mode](int(dim), exclude_instruction=not config.get("include_prompt", True))


__all__ = [
    "POOLING_HEADS",
    "PoolingHead",
    "CLSPooling",
    "MeanPooling",
    "WeightedMeanPooling",
    "LastTokenPooling",
    "LatentAttentionPooling",
    "MultiLayerPooling",
    "build_head",
    "head_from_config",
    "exclude_prefix",
    "masked_mean",
    "last_token_index",
    "first_token_index",
]
