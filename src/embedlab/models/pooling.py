"""Pooling heads: token (or per-layer) states -> ``sentence_embedding``.

Each head is a chain :class:`~embedlab.models.modules.Module` of kind ``pooling``. ``pool(features)``
returns the (B, k) vectors; ``forward(features)`` stores them as ``features["sentence_embedding"]``.
Plain heads (cls, mean, weighted_mean, last_token) are saved in sentence-transformers' own ``Pooling``
format, so ``SentenceTransformer(path)`` loads them; the trainable heads (latent_attention,
last_layer, multi_layer) as ``config.json`` + ``model.safetensors``.

A head reads ``token_embeddings``, ``attention_mask`` and ``pool_mask``, and, for multi_layer,
``hidden_states`` or a caching source's ``layer_summaries`` (see :mod:`embedlab.models.features`).
Options that depend on the attention mode (the paper's "last token if causal, else mean" rule) live in
the head's :meth:`PoolingHead.defaults_for`, applied by :func:`build_head`.
"""

from __future__ import annotations

import inspect
import json
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from embedlab.errors import ConfigError, PoolingError
from embedlab.io import atomic_path, read_json
from embedlab.models import st_compat
from embedlab.models.features import (
    LAYER_SUMMARIES,
    default_summary,
    exclude_prefix,
    first_token_index,
    gather_positions,
    last_token_index,
    masked_mean,
    summarize_layers,
)
from embedlab.models.modules import CONFIG_NAME, WEIGHTS_NAME, Module, load_weights, register
from embedlab.validation import choice, positive_int


# ---------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------
@register
class PoolingHead(Module, metaclass=ABCMeta):
    """Base class: subclasses set ``name`` and implement ``pool(features) -> (B, out_dim)``.

    ``input_dim`` is the width of the token states the head reads (the backbone's hidden size).
    """

    kind = "pooling"
    folder_name = "Pooling"
    name: ClassVar[str] = "pooling"
    trainable: ClassVar[bool] = False
    supports_exclude_instruction: ClassVar[bool] = False
    needs_cls_token: ClassVar[bool] = False
    st_pooling_mode: ClassVar[str | None] = None  # sentence-transformers' name for plain heads
    description: ClassVar[str] = ""
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, input_dim: int, exclude_instruction: bool = False) -> None:
        super().__init__()
        _positive(self.name, "input_dim", input_dim)
        if exclude_instruction and not self.can_exclude_instruction():
            raise PoolingError(
                f"pooling '{self.name}' cannot exclude instruction tokens "
                "(only heads that average tokens can: mean, weighted_mean, latent_attention, "
                "last_layer over tokens, multi_layer with mean summary)"
            )
        self.input_dim = input_dim
        self.exclude_instruction = bool(exclude_instruction)

    def can_exclude_instruction(self) -> bool:
        return self.supports_exclude_instruction

    @classmethod
    def defaults_for(cls, attention: str) -> dict[str, Any]:
        """Options whose default depends on the attention mode (none for most heads)."""
        return {}

    @property
    def embedding_dim(self) -> int:
        return self.input_dim

    def output_dim(self, input_dim: int) -> int:
        return self.embedding_dim

    def check(self, source: Any, input_dim: int) -> None:
        if self.needs_cls_token and source.is_decoder:
            raise PoolingError(
                f"pooling '{self.name}' needs an encoder's [CLS] token, but {source.source} is a decoder; "
                "use last_token, mean, weighted_mean, latent_attention, last_layer or multi_layer"
            )
        if self.input_dim != input_dim:
            raise PoolingError(
                f"pooling '{self.name}' expects {self.input_dim}-d states, the backbone gives {input_dim}"
            )

    def get_config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "exclude_instruction": self.exclude_instruction}

    def has_weights(self) -> bool:
        return self.trainable

    def st_type(self) -> str:
        return st_compat.ST_POOLING if self.st_pooling_mode is not None else "embedlab.pooling"

    @abstractmethod
    def pool(self, features: dict[str, Any]) -> torch.Tensor:
        """The sentence vectors, (B, out_dim), from the features the source wrote."""

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        features["sentence_embedding"] = self.pool(features)
        return features

    # -- save / load ---------------------------------------------------------------------------
    def saved_config(self) -> dict[str, Any]:
        if self.st_pooling_mode is not None:
            return {
                "embedding_dimension": self.input_dim,
                "pooling_mode": self.st_pooling_mode,
                "include_prompt": not self.exclude_instruction,
            }
        return {"embedlab_pooling": self.name, **self.get_config()}

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            (tmp / CONFIG_NAME).write_text(json.dumps(self.saved_config(), indent=2) + "\n")
            if self.trainable:
                from safetensors.torch import save_file

                save_file(
                    {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(tmp / WEIGHTS_NAME)
                )

    @classmethod
    def load(cls, path: str | Path) -> "PoolingHead":
        """Load any head saved by :meth:`save` (or a sentence-transformers ``Pooling`` folder)."""
        path = Path(path)
        head = head_from_config(read_json(path / CONFIG_NAME, PoolingError, "pooling config"))
        if head.trainable:
            head.load_state_dict(load_weights(path / WEIGHTS_NAME, "pooling", PoolingError))
        return head


# ---------------------------------------------------------------------------------------------
# Plain heads
# ---------------------------------------------------------------------------------------------
class CLSPooling(PoolingHead):
    name = "cls"
    st_pooling_mode = "cls"
    needs_cls_token = True
    description = "state of the first ([CLS]) token; encoders only (BERT)"

    def pool(self, features: dict[str, Any]) -> torch.Tensor:
        return gather_positions(features["token_embeddings"], first_token_index(features["attention_mask"]))


class MeanPooling(PoolingHead):
    name = "mean"
    st_pooling_mode = "mean"
    supports_exclude_instruction = True
    description = "masked mean of the last-layer token states (Sentence-BERT)"

    def pool(self, features: dict[str, Any]) -> torch.Tensor:
        return masked_mean(features["token_embeddings"], features["pool_mask"])


class WeightedMeanPooling(PoolingHead):
    name = "weighted_mean"
    st_pooling_mode = "weightedmean"
    supports_exclude_instruction = True
    description = "position-weighted mean, weight i for the i-th real token (SGPT, Muennighoff 2022)"

    def pool(self, features: dict[str, Any]) -> torch.Tensor:
        x = features["token_embeddings"]
        positions = features["attention_mask"].to(x.dtype).cumsum(dim=1)  # 1..n from the first real token
        weights = (positions * features["pool_mask"].to(x.dtype)).unsqueeze(-1)
        return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class LastTokenPooling(PoolingHead):
    name = "last_token"
    st_pooling_mode = "lasttoken"
    description = "state of the last real token (EOS when appended; the headline paper's baseline, Model 1)"

    def pool(self, features: dict[str, Any]) -> torch.Tensor:
        return gather_positions(features["token_embeddings"], last_token_index(features["attention_mask"]))


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
    """Multi-head cross-attention with pre-LayerNorm on the query and context sides; an optional
    context mask (B, Nc), 1 = attend."""

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

    def forward(
        self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """queries (B, Nq, d), context (B, Nc, d) -> (B, Nq, d) (the residual is added by the caller)."""
        b, nq, _ = queries.shape
        q = self.to_q(self.norm_q(queries))
        k, v = self.to_kv(self.norm_ctx(context)).chunk(2, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

        mask = None if context_mask is None else context_mask.bool()[:, None, None, :]
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
        return self.to_out(out.transpose(1, 2).reshape(b, nq, self.num_heads * self.head_dim))


def _resolve_widths(dim: int, num_heads: int, head_dim: int | None, name: str) -> int:
    _positive(name, "num_heads", num_heads)
    if head_dim is None:
        if dim % num_heads:
            raise PoolingError(f"{name}: input_dim {dim} is not divisible by num_heads {num_heads}; set head_dim")
        head_dim = dim // num_heads
    return _positive(name, "head_dim", head_dim)


def _head_setting(check: Callable[..., Any], head: str, key: str, value: Any, *args: Any) -> Any:
    """An :mod:`embedlab.validation` check of a head's setting (named ``head: 'key'``), as a :class:`PoolingError`."""
    try:
        return check(f"{head}: '{key}'", value, *args)
    except PoolingError:
        raise
    except ConfigError as exc:
        raise PoolingError(str(exc)) from None


def _positive(head: str, key: str, value: Any) -> int:
    """:func:`embedlab.validation.positive_int` for a head's setting, as a :class:`PoolingError`."""
    return _head_setting(positive_int, head, key, value)


def _choice(head: str, key: str, value: Any, choices: Sequence[str]) -> str:
    """:func:`embedlab.validation.choice` for a head's setting, as a :class:`PoolingError`."""
    return _head_setting(choice, head, key, value, choices)


class _LatentHead(PoolingHead):
    """Shared parts of the trainable heads: a latent array and one pre-norm cross-attention + GEGLU block."""

    trainable = True

    def _build_block(self, dim: int, num_latents: int, num_heads: int, head_dim: int | None, ff_mult: int) -> None:
        for key, v in (("num_latents", num_latents), ("ff_mult", ff_mult)):
            _positive(self.name, key, v)
        self.num_latents, self.num_heads, self.ff_mult = num_latents, num_heads, ff_mult
        self.head_dim = _resolve_widths(dim, num_heads, head_dim, self.name)
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.attn = CrossAttention(dim, num_heads, self.head_dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_mult)

    def _block(
        self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``q <- q + MHA(LN(q), LN(context))``, then ``q <- q + FF(LN(q))``."""
        queries = queries + self.attn(queries, context, context_mask)
        return queries + self.ff(self.norm_ff(queries))

    def _latent_queries(self, batch: int) -> torch.Tensor:
        return self.latents.unsqueeze(0).expand(batch, -1, -1)

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
    MLP, then a masked mean over tokens. Not the headline paper's last-layer head (see last_layer).
    """

    name = "latent_attention"
    supports_exclude_instruction = True
    description = "NV-Embed latent attention: tokens query a trainable latent array, MLP, masked mean"
    PRESETS = {
        "small": {"num_latents": 512, "num_heads": 8, "head_dim": None, "ff_mult": 1},
        # NV-Embed: 512 latents, 8 heads, cross_dim_head = hidden size (4096), FF 4096 -> 2·16384 -> 4096
        "paper": {"num_latents": 512, "num_heads": 8, "head_dim": "dim", "ff_mult": 4},
    }

    def __init__(
        self,
        input_dim: int,
        num_latents: int = 512,
        num_heads: int = 8,
        head_dim: int | None = None,
        ff_mult: int = 1,
        exclude_instruction: bool = False,
    ) -> None:
        super().__init__(input_dim, exclude_instruction)
        self._build_block(input_dim, num_latents, num_heads, head_dim, ff_mult)

    def pool(self, features: dict[str, Any]) -> torch.Tensor:
        h = features["token_embeddings"]
        h = self._block(h, self._latent_queries(h.shape[0]))  # tokens query the latents
        return masked_mean(h, features["pool_mask"])


# Tang & Yang's two trainable heads share one block and so one set of widths. paper: 768 latents, 32 heads
# x 2048 channels, FF d -> 8d (GEGLU) -> d (LastLayersTrainablePooling is the multi-layer block).
_TANG_YANG_PRESETS: dict[str, dict[str, Any]] = {
    "small": {"num_latents": 32, "num_heads": 8, "head_dim": None, "ff_mult": 1},
    "paper": {"num_latents": 768, "num_heads": 32, "head_dim": 2048, "ff_mult": 4},
}


class LastLayerPooling(_LatentHead):
    """The headline paper's Last-Layer Trainable Pooling (Tang & Yang 2024, Models 2 and 4).

    Perceiver-style: trainable latents are the queries and cross-attend over the last layer's token
    states (``x <- x + W_o·MHA(Q=W_q·LN(latents), K,V=W_kv·LN(h))``, then ``x <- x + FF(LN(x))``), then a
    mean over the latents. The multi-layer head's block applied to tokens instead of layers, without the
    layer embedding. ``context`` follows the paper's code: ``last_token`` (Model 2, causal: the EOS state
    is the only key) or ``tokens`` (Model 4, bidirectional: every token). Deviation: padding is masked
    out of the keys here; the paper's code let left-padding tokens into K/V.
    """

    name = "last_layer"
    description = "Tang & Yang last-layer trainable pooling: latents cross-attend over the last layer's tokens"
    CONTEXTS: ClassVar[tuple[str, ...]] = ("tokens", "last_token")
    PRESETS = _TANG_YANG_PRESETS

    def __init__(
        self,
        input_dim: int,
        context: str = "tokens",
        num_latents: int = 32,
        num_heads: int = 8,
        head_dim: int | None = None,
        ff_mult: int = 1,
        exclude_instruction: bool = False,
    ) -> None:
        self.context = _choice(self.name, "context", context, self.CONTEXTS)
        super().__init__(input_dim, exclude_instruction)
        self._build_block(input_dim, num_latents, num_heads, head_dim, ff_mult)

    def can_exclude_instruction(self) -> bool:
        return self.context == "tokens"

    @classmethod
    def defaults_for(cls, attention: str) -> dict[str, Any]:
        return {"context": "last_token" if attention == "causal" else "tokens"}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "context": self.context}

    def pool(self, features: dict[str, Any]) -> torch.Tensor:
        h = features["token_embeddings"]
        if self.context == "last_token":
            context = gather_positions(h, last_token_index(features["attention_mask"])).unsqueeze(1)
            mask = None
        else:
            context, mask = h, features["pool_mask"]
        return self._block(self._latent_queries(h.shape[0]), context, mask).mean(dim=1)


class MultiLayerPooling(_LatentHead):
    """The headline paper's Multi-Layers Trainable Pooling (Tang & Yang 2024, §4; Models 3 and 5).

    One summary per hidden layer (last token under causal attention, masked mean under bidirectional),
    plus a learned per-layer embedding; trainable latents cross-attend over the layer axis, then a
    GEGLU feed-forward block, then a mean over the latents.
    """

    name = "multi_layer"
    needs_hidden_states = True
    description = "Multi-Layers Trainable Pooling: latents cross-attend over per-layer summaries"
    SUMMARIES: ClassVar[tuple[str, ...]] = LAYER_SUMMARIES
    PRESETS = _TANG_YANG_PRESETS

    def __init__(
        self,
        input_dim: int,
        num_layers: int,
        layer_summary: str = "last_token",
        num_latents: int = 32,
        num_heads: int = 8,
        head_dim: int | None = None,
        ff_mult: int = 1,
        exclude_instruction: bool = False,
    ) -> None:
        self.layer_summary = _choice(self.name, "layer_summary", layer_summary, self.SUMMARIES)
        super().__init__(input_dim, exclude_instruction)
        _positive(self.name, "num_layers", num_layers)
        self.num_layers = num_layers
        self.layer_embedding = nn.Embedding(num_layers, input_dim)
        self._build_block(input_dim, num_latents, num_heads, head_dim, ff_mult)

    def can_exclude_instruction(self) -> bool:
        return self.layer_summary == "mean"

    @classmethod
    def defaults_for(cls, attention: str) -> dict[str, Any]:
        return {"layer_summary": default_summary(attention)}

    def check(self, source: Any, input_dim: int) -> None:
        super().check(source, input_dim)
        if self.num_layers != source.num_layers:
            raise PoolingError(
                f"multi_layer pooling was built for {self.num_layers} layers, the backbone has {source.num_layers}"
            )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_layers": self.num_layers, "layer_summary": self.layer_summary}

    def summarize_layers(self, features: dict[str, Any]) -> torch.Tensor:
        """(B, L, d): one vector per hidden layer."""
        try:
            layers = summarize_layers(features, self.layer_summary)
        except KeyError:
            raise PoolingError(f"{self.name}: the source gave no hidden states") from None
        if layers.shape[1] != self.num_layers:
            raise PoolingError(f"{self.name}: expected {self.num_layers} hidden layers, got {layers.shape[1]}")
        return layers

    def pool(self, features: dict[str, Any]) -> torch.Tensor:
        layers = self.summarize_layers(features) + self.layer_embedding.weight.unsqueeze(0)
        return self._block(self._latent_queries(layers.shape[0]), layers).mean(dim=1)  # latents query the layers


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
POOLING_HEADS: dict[str, type[PoolingHead]] = {
    cls.name: cls
    for cls in (
        CLSPooling,
        MeanPooling,
        WeightedMeanPooling,
        LastTokenPooling,
        LatentAttentionPooling,
        LastLayerPooling,
        MultiLayerPooling,
    )
}
_ST_MODES = {cls.st_pooling_mode: cls for cls in POOLING_HEADS.values() if cls.st_pooling_mode}


def build_head(
    name: str,
    input_dim: int,
    *,
    num_layers: int | None = None,
    attention: str | None = None,
    preset: str | None = None,
    **options: Any,
) -> PoolingHead:
    """Build a pooling head by name. ``preset`` ('small' or 'paper') fills the trainable heads' widths;
    ``attention`` fills the options whose default depends on it (:meth:`PoolingHead.defaults_for`);
    explicit ``options`` win over both."""
    if name not in POOLING_HEADS:
        raise PoolingError(f"unknown pooling '{name}'; choose one of: {', '.join(POOLING_HEADS)}")
    cls = POOLING_HEADS[name]
    kwargs: dict[str, Any] = {}
    if preset is not None:
        if preset not in cls.PRESETS:
            known = f"; presets: {', '.join(cls.PRESETS)}" if cls.PRESETS else " (it has no trainable widths)"
            raise PoolingError(f"pooling '{name}' has no preset {preset!r}{known}")
        kwargs.update({k: (input_dim if v == "dim" else v) for k, v in cls.PRESETS[preset].items()})
    if attention is not None:
        kwargs.update(cls.defaults_for(attention))
    kwargs.update(options)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "input_dim"}
    if "num_layers" in allowed:
        if num_layers is None:
            raise PoolingError(f"{name} pooling needs the backbone's number of layers")
        kwargs["num_layers"] = num_layers
    unknown = set(kwargs) - allowed
    if unknown:
        raise PoolingError(
            f"pooling '{name}' has no option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    return cls(input_dim, **kwargs)


def head_from_config(config: dict[str, Any]) -> PoolingHead:
    """Rebuild a head from a saved config (embedlab's or sentence-transformers' Pooling format)."""
    config = dict(config)
    if "embedlab_pooling" in config:
        name = config.pop("embedlab_pooling")
        input_dim = config.pop("input_dim", None) or config.pop("dim", None)  # "dim" before embedlab 0.2
        if name not in POOLING_HEADS:
            raise PoolingError(f"saved pooling {name!r} is unknown; known: {', '.join(POOLING_HEADS)}")
        return POOLING_HEADS[name](input_dim, **config)
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
    "LastLayerPooling",
    "MultiLayerPooling",
    "build_head",
    "head_from_config",
    "exclude_prefix",
    "masked_mean",
    "last_token_index",
    "first_token_index",
]
