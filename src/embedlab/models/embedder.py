"""Embedder: a chain of small modules, in the sentence-transformers spirit.

``source -> pooling -> [projection] -> [truncate] -> [normalize] -> ...``, each module owning its
config and its files (:mod:`embedlab.models.modules`), passing one features dict along
(:mod:`embedlab.models.features`). The source is pluggable: the live :class:`Backbone`, or any module
with the same protocol (``tokenize``, ``forward(features, output_hidden_states)``, ``hidden_size``,
``num_layers``, ``is_decoder``, ``attention``, ``tokenizer``, ``max_length``, ``padding_side``), such
as the design grid's cached-feature source. Named prompts are model data.

Layout written by :meth:`Embedder.save` (sentence-transformers')::

    modules.json                      # 0: Transformer (root), then one folder per module
    config_sentence_transformers.json # prompts, default prompt, similarity
    sentence_bert_config.json         # max_seq_length
    config.json, model.safetensors, tokenizer files, embedlab_backbone.json   # the source (is_causal persisted)
    1_Pooling/config.json [+ model.safetensors for trainable heads]
    2_Dense/ ... 3_Normalize/         # whatever follows
    embedlab.json                     # a summary (version, design); informational
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from embedlab._version import __version__
from embedlab.errors import ConfigError, EmbedlabError
from embedlab.io import atomic_path, cache_key, read_json
from embedlab.models import st_compat
from embedlab.models.backbone import Backbone
from embedlab.models.batching import pad_batch, token_budget_batches
from embedlab.models.fingerprint import weights_fingerprint
from embedlab.models.modules import REGISTRY, Module, Normalize, Truncate, module_class_for
from embedlab.models.pooling import PoolingHead, build_head
from embedlab.progress import ShowProgress, progress_bar
from embedlab.sources.resolve import resolve_source
from embedlab.tokenize.prompted import check_texts

log = logging.getLogger(__name__)

EMBEDLAB_CONFIG = "embedlab.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 runs natively here (CUDA with bf16, or a CPU with AVX-512 BF16 or AMX). Without it
    PyTorch emulates bf16 and autocast is several times *slower* than fp32 (measured: 5x on an AVX2 CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


INT8 = "int8"  # not an autocast dtype: the backbone's linear layers dynamically quantised (models/quantize.py)


def resolve_dtype(dtype: str, device: torch.device | str = "cpu") -> str:
    """``auto`` -> ``bf16`` where it is native, else ``fp32``; other names are returned as they are."""
    if dtype == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if dtype not in DTYPES and dtype != INT8:
        raise ConfigError(f"unknown dtype '{dtype}'; choose one of auto, {', '.join(DTYPES)}, {INT8}")
    return dtype


@dataclass
class EncodeStats:
    """What the last :meth:`Embedder.encode` call did."""

    texts: int = 0
    tokens: int = 0
    truncated: int = 0
    max_length: int = 0
    batches: int = 0
    seconds: float = 0.0


class Embedder(nn.Module):
    """An ordered chain of modules plus named prompts. The first module is the source, one module is
    the pooling head; the rest map ``sentence_embedding`` to ``sentence_embedding``."""

    def __init__(
        self,
        modules: Sequence[Module],
        *,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
    ) -> None:
        super().__init__()
        self.chain = nn.ModuleList(modules)
        self.prompts = dict(prompts or {})
        self.default_prompt_name = default_prompt_name
        self.last_stats = EncodeStats()
        self._fingerprint: tuple[Any, str] | None = None
        self._copy_of: str | None = (
            None  # set on an int8 or ONNX Runtime copy (_derived_copy): the fingerprint of the embedder it was made from
        )
        self._validate()

    # ------------------------------------------------------------------------------------------
    def _validate(self) -> None:
        if len(self.chain) < 2 or not getattr(self.chain[0], "is_source", False):
            raise ConfigError("an embedder chain starts with a source module (a backbone) followed by a pooling head")
        heads = [i for i, m in enumerate(self.chain) if isinstance(m, PoolingHead)]
        if heads != [1]:
            raise ConfigError(
                f"an embedder chain has exactly one pooling head, right after the source; got modules "
                f"{[m.kind for m in self.chain]}"
            )
        if self.output_kind != "dense" and len(self.chain) > 2:
            raise ConfigError(
                f"pooling '{self.chain[1].name}' gives {self.output_kind} vectors and ends the chain; got modules "
                f"{[m.kind for m in self.chain]} (no projection, truncation or normalisation after it)"
            )
        source = self.chain[0]
        width = source.hidden_size
        for module in self.chain[1:]:
            module.check(source, width)  # each adjacent pair, once
            width = module.output_dim(width)
        self._output_dim = width
        self._needs_hidden_states = any(m.needs_hidden_states for m in self.chain[1:])
        for key, value in self.prompts.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ConfigError("prompts must map names to strings")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ConfigError(
                f"default prompt '{self.default_prompt_name}' is not among the prompts {list(self.prompts)}"
            )

    @classmethod
    def build(
        cls,
        source: Any,
        head: PoolingHead,
        *,
        projection: Module | None = None,
        normalize: bool = True,
        truncate_dim: int | None = None,
        **kwargs: Any,
    ) -> "Embedder":
        """The usual chain: source, head, [projection], [truncate], [normalize]."""
        modules: list[Module] = [source, head]
        if projection is not None:
            modules.append(projection)
        if truncate_dim is not None:
            modules.append(Truncate(truncate_dim))
        if normalize:
            modules.append(Normalize())
        return cls(modules, **kwargs)

    def with_modules(self, modules: Sequence[Module]) -> "Embedder":
        """A new embedder over ``modules`` with this one's prompts (modules are shared, not copied)."""
        return type(self)(modules, prompts=self.prompts, default_prompt_name=self.default_prompt_name)

    def with_source(self, source: Any) -> "Embedder":
        """The same chain over another source (e.g. a backbone with other tokenization settings)."""
        return self.with_modules([source, *self.chain[1:]])

    def with_options(self, **backbone_options: Any) -> "Embedder":
        """A new embedder whose source has other tokenization settings (``append_eos``, ``padding_side``,
        ``max_length``); validated like a new one."""
        return self.with_source(self.source.with_options(**backbone_options))

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        *,
        pooling: str | None = None,
        attention: str | None = None,
        normalize: bool | None = None,
        truncate_dim: int | None = None,
        dim: int | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        append_eos: bool | None = None,
        padding_side: str | None = None,
        max_length: int | None = None,
        pooling_options: dict[str, Any] | None = None,
        preset: str | None = None,
        attn_implementation: str = "sdpa",
    ) -> "Embedder":
        """Build an embedder from an alias, a saved embedder, a sentence-transformers or HF directory,
        a GGUF file or a hub id. The saved chain and settings are defaults; arguments override them:
        ``pooling``/``pooling_options``/``preset`` replace the head, ``normalize`` adds or drops the
        final normalisation, ``truncate_dim`` (alias ``dim``) sets the Matryoshka truncation.
        """
        if dim is not None and truncate_dim is not None and dim != truncate_dim:
            raise ConfigError("give truncate_dim or dim (its alias), not both")
        truncate_dim = truncate_dim if truncate_dim is not None else dim
        target, where = resolve_source(model)
        source_cls = source_class(Path(target))  # the chain's first module, through the registry
        source = source_cls.from_source(
            target,
            where,
            attention=attention,
            attn_implementation=attn_implementation,
            max_length=max_length,
            padding_side=padding_side,
        )
        saved_modules, saved_prompts = _read_saved_chain(Path(target))
        builtin = getattr(source, "builtin_pooling", None)  # a source whose saved form pools by itself (a static table)
        if builtin is not None:
            if pooling not in (None, builtin):
                raise ConfigError(
                    f"{where} has its pooling built in ({builtin} of its token rows); got pooling={pooling!r}"
                )
            for key, value in (("pooling_options", pooling_options), ("preset", preset)):
                if value:
                    raise ConfigError(f"{where} has its pooling built in ({builtin}): {key} does not apply")
            head, rest = build_head(builtin, source.hidden_size), list(saved_modules)  # the head is not saved
        else:
            head = saved_modules[0] if saved_modules and isinstance(saved_modules[0], PoolingHead) else None
            rest = saved_modules[1:] if head is not None else []
        if head is None or (pooling is not None and pooling != head.name) or pooling_options or preset is not None:
            name = pooling or (head.name if head is not None else ("last_token" if source.is_decoder else "mean"))
            head = build_head(
                name,
                source.hidden_size,
                num_layers=source.num_layers,
                attention=source.attention,
                preset=preset,
                **dict(pooling_options or {}),
            )
            rest = [m for m in rest if not m.has_weights()]  # a trained projection belongs to the replaced head
        if append_eos is None:
            append_eos = source.append_eos or (source.is_decoder and head.name == "last_token" and not saved_modules)
        if append_eos != source.append_eos:
            source = source.with_options(append_eos=append_eos)
        if normalize is not None:
            has = any(isinstance(m, Normalize) for m in rest)
            if normalize and not has:
                rest.append(Normalize())
            elif not normalize:
                rest = [m for m in rest if not isinstance(m, Normalize)]
        elif not saved_modules and getattr(source, "normalize_by_default", True):
            rest.append(Normalize())
        if truncate_dim is not None:
            rest = [m for m in rest if not isinstance(m, Truncate)]
            at = next((i for i, m in enumerate(rest) if isinstance(m, Normalize)), len(rest))
            rest.insert(at, Truncate(truncate_dim))
        if getattr(head, "output_kind", "dense") != "dense":  # a sparse head ends the chain (SPLADE: dot products)
            if normalize or truncate_dim is not None:
                raise ConfigError(
                    f"pooling '{head.name}' gives sparse vectors: normalize and truncate_dim do not apply"
                )
            rest = [m for m in rest if not m.postprocess]
        embedder = cls(
            [source, head, *rest],
            prompts={**saved_prompts.get("prompts", {}), **(prompts or {})},
            default_prompt_name=default_prompt_name or saved_prompts.get("default_prompt_name"),
        )
        return embedder.eval()  # inference mode, as transformers' from_pretrained leaves a model (dropout off)

    load = from_pretrained

    # ------------------------------------------------------------------------------------------
    @property
    def source(self) -> Any:
        return self.chain[0]

    @property
    def backbone(self) -> Any:
        """The source module (a :class:`Backbone`, or a source that wraps one)."""
        return self.chain[0]

    @property
    def head(self) -> PoolingHead:
        return self.chain[1]  # type: ignore[return-value]

    @property
    def tokenizer(self) -> Any:
        return self.source.tokenizer

    @property
    def attention(self) -> str:
        return self.source.attention

    @property
    def append_eos(self) -> bool:
        return self.source.append_eos

    @property
    def padding_side(self) -> str:
        return self.source.padding_side

    @property
    def normalize(self) -> bool:
        return any(isinstance(m, Normalize) for m in self.chain)

    @property
    def truncate_dim(self) -> int | None:
        return next((m.truncate_dim for m in self.chain if isinstance(m, Truncate)), None)

    @property
    def output_dim(self) -> int:
        return self._output_dim

    @property
    def output_kind(self) -> str:
        """What the head gives: ``dense`` vectors, or ``sparse`` weights over the vocabulary (a SPLADE head)."""
        return getattr(self.chain[1], "output_kind", "dense")

    @property
    def max_length(self) -> int:
        return self.source.max_length

    def trainable_modules(self) -> list[Module]:
        """The modules after the source that hold parameters (head, projection, ...)."""
        return [m for m in self.chain[1:] if m.num_parameters()]

    def resolve_prompt(self, prompt_name: str | None = None, prompt: str | None = None) -> str:
        if prompt is not None and prompt_name is not None:
            raise ConfigError("give either prompt_name or prompt, not both")
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return ""
        if name not in self.prompts:
            known = ", ".join(self.prompts) or "none defined"
            raise ConfigError(f"unknown prompt '{name}' (prompts: {known})")
        return self.prompts[name]

    # ------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], prompts: Sequence[str] | str | None = None) -> Any:
        """``Tokenized`` ids of ``prompts[i] + texts[i]`` with each prompt's token count (the one
        mechanism used by encode, training and serving)."""
        return self.source.tokenize(texts, prompts)

    def batch_features(
        self,
        ids: Sequence[Sequence[int]],
        prompt_lengths: Sequence[int] | None = None,
        device: torch.device | None = None,
    ) -> dict[str, Any]:
        """Pad token ids into the features a source reads (the source's ``pad`` where it has one;
        ``prompt_length`` only when the head excludes the instruction)."""
        pad = getattr(self.source, "pad", None)
        input_ids, mask = (
            pad(ids) if pad is not None else pad_batch(ids, self.tokenizer.pad_token_id, self.padding_side)
        )
        device = device or self.device
        features: dict[str, Any] = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
        if self.head.exclude_instruction and prompt_lengths is not None and any(prompt_lengths):
            features["prompt_length"] = torch.as_tensor(list(prompt_lengths), dtype=torch.long, device=device)
        return features

    def forward(self, features: dict[str, Any], *, postprocess: bool = True) -> dict[str, Any]:
        """Run the chain on a features dict holding ``input_ids`` and ``attention_mask``. With
        ``postprocess=False`` the truncation/normalisation modules are skipped (training losses
        normalise and truncate themselves)."""
        features = self.source(features, output_hidden_states=self._needs_hidden_states)
        for module in self.chain[1:]:
            if postprocess or not module.postprocess:
                features = module(features)
        return features

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    # ------------------------------------------------------------------------------------------
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        dtype: str = "fp32",
        token_budget: int | None = None,
        max_batch_size: int | None = None,
        output: str = "numpy",
        show_progress: ShowProgress = None,
        runtime: str | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed texts: length-sorted batches under a token budget, inference mode, optional bf16.

        ``token_budget`` bounds padded tokens per batch (default 2,048 on CPU, where small batches of
        similar length are fastest, and 32,768 on GPU); ``max_batch_size`` defaults to 64 / 512.
        ``dtype="auto"`` is bf16 where bf16 is native (:func:`native_bf16`), else fp32; ``"int8"`` runs an
        int8 copy of the backbone's linear layers (:meth:`quantized_int8`, made once per weights).
        ``runtime="onnx"`` runs the backbone in ONNX Runtime (:meth:`onnx`; fp32, or int8 with ``dtype="int8"``);
        ``None`` is what this embedder runs on (``torch``, or ``onnx`` for a copy made by :meth:`onnx`).
        Empty strings are encoded as the model would (e.g. ``[CLS] [SEP]`` for BERT); a text that
        gives no tokens at all (a decoder without BOS) raises :class:`InputError`. ``show_progress``
        (:mod:`embedlab.progress`): ``None`` draws a bar from 512 texts when stderr is a terminal.
        """
        target, dtype = self.for_runtime(runtime, dtype)
        if target is not self:  # an int8 or ONNX Runtime copy, which runs at its own precision
            out = target.encode(
                texts,
                prompt_name=prompt_name,
                prompt=prompt,
                dtype="fp32",
                token_budget=token_budget,
                max_batch_size=max_batch_size,
                output=output,
                show_progress=show_progress,
            )
            self.last_stats = target.last_stats
            return out
        if output in ("dense", "sparse", "multi_vector", "binary"):  # a typed result (embedlab.vectors), rows = texts
            from embedlab import vectors

            key = vectors.FEATURE_KEYS[output]
            same = dict(
                prompt_name=prompt_name,
                prompt=prompt,
                dtype=dtype,
                token_budget=token_budget,
                max_batch_size=max_batch_size,
                show_progress=show_progress,
            )
            if output == "sparse" and self.output_kind == "sparse":
                return self._encode_sparse(texts, **same)
            if self.output_kind != "dense" and key == "sentence_embedding":
                raise ConfigError(
                    f"output={output!r} needs dense vectors; this model's head "
                    f"({self.head.name}) gives {self.output_kind} ones: use output={self.output_kind!r}"
                )
            if key != "sentence_embedding":  # multi-vector heads: their own issue
                raise ConfigError(
                    f"output={output!r} needs a head that writes {key!r}; this model's chain "
                    f"({', '.join(m.kind for m in self.chain)}) has none"
                )
            dense = self.encode(texts, **same, runtime=runtime)  # type: ignore[arg-type]
            return vectors.from_features({key: dense.reshape(-1, self.output_dim)}, output)
        texts, single = check_texts(texts)
        if output not in ("numpy", "torch"):
            raise ConfigError("output must be numpy, torch, dense, sparse, multi_vector or binary")
        start = time.perf_counter()
        pre = self.resolve_prompt(prompt_name, prompt)
        n = len(texts)
        result = torch.empty((n, self.output_dim), dtype=torch.float32)
        stats = EncodeStats(texts=n, max_length=self.max_length)
        encode_rows = getattr(
            self.source, "encode_rows", None
        )  # a source that embeds in numpy, without the torch chain
        if n and encode_rows is not None:
            result = torch.from_numpy(encode_rows(self, texts, pre, stats, show_progress))
        elif n:
            for batch, features in self._batches(texts, pre, dtype, token_budget, max_batch_size, show_progress, stats):
                result[torch.as_tensor(batch)] = features["sentence_embedding"].float().cpu()
            if not torch.isfinite(result).all():
                bad = int((~torch.isfinite(result).all(dim=1)).nonzero()[0])
                raise EmbedlabError(f"the model produced NaN/inf for text {bad}: check the model weights and dtype")
            if stats.truncated:
                log.warning("%d of %d texts were truncated to %d tokens", stats.truncated, n, self.max_length)
        stats.seconds = time.perf_counter() - start
        self.last_stats = stats
        if single:
            result = result[0]
        return result.numpy() if output == "numpy" else result

    def _batches(
        self,
        texts: Sequence[str],
        pre: str,
        dtype: str,
        token_budget: int | None,
        max_batch_size: int | None,
        show_progress: ShowProgress,
        stats: EncodeStats,
    ) -> Iterator[tuple[list[int], dict[str, Any]]]:
        """(row indices, output features) of each token-budget batch, in inference mode at ``dtype``."""
        n = len(texts)
        tokenized = self.tokenize(list(texts), pre)
        stats.truncated = tokenized.truncated
        lengths = tokenized.lengths
        stats.tokens = sum(lengths)
        device = self.device
        on_cpu = device.type == "cpu"
        token_budget = token_budget or (2048 if on_cpu else 32768)
        max_batch_size = max_batch_size or (64 if on_cpu else 512)
        was_training = self.training
        self.eval()
        try:
            with (
                torch.inference_mode(),
                autocast(device, DTYPES[dtype]),
                low_precision_cpu_attention(self.source, device, dtype != "fp32"),
                progress_bar(show_progress, total=n, desc="encode", unit="text", auto=n >= 512) as bar,
            ):
                for batch in token_budget_batches(lengths, token_budget, max_batch_size):
                    features = self.batch_features(
                        [tokenized.ids[i] for i in batch], [tokenized.prompt_lengths[i] for i in batch], device
                    )
                    yield batch, self.forward(features)
                    stats.batches += 1
                    bar.update(len(batch))
        finally:
            self.train(was_training)

    def _encode_sparse(
        self,
        texts: str | Sequence[str],
        *,
        prompt_name: str | None,
        prompt: str | None,
        dtype: str,
        token_budget: int | None,
        max_batch_size: int | None,
        show_progress: ShowProgress,
    ) -> Any:
        """``encode(output="sparse")``: each batch's ``sparse_embedding`` as :class:`~embedlab.vectors.SparseEmbeddings`,
        joined in input order (the (n, V) dense matrix is never built)."""
        from embedlab import vectors

        start = time.perf_counter()
        texts, _ = check_texts(texts)
        dtype = resolve_dtype(dtype, self.device)
        if dtype == INT8:
            raise ConfigError("output='sparse' runs fp32, bf16 or fp16; int8 is for dense backbones")
        pre = self.resolve_prompt(prompt_name, prompt)
        stats = EncodeStats(texts=len(texts), max_length=self.max_length)
        parts, order = [], []
        for batch, features in self._batches(texts, pre, dtype, token_budget, max_batch_size, show_progress, stats):
            slots = features["sparse_embedding"]
            if not torch.isfinite(slots["values"]).all():
                raise EmbedlabError("the model produced NaN/inf sparse weights: check the model weights and dtype")
            parts.append(
                vectors.from_features(
                    {"sparse_embedding": {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in slots.items()}},
                    "sparse",
                )
            )
            order.extend(batch)
        stats.seconds = time.perf_counter() - start
        self.last_stats = stats
        if not parts:
            return vectors.SparseEmbeddings.from_rows([], self.output_dim)
        joined = vectors.concat(parts)
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
        return joined.take(inverse)

    def _derived_copy(self, kind: str, build: Callable[[], "Embedder"]) -> "Embedder":
        """The copy ``build`` makes (int8, ONNX Runtime), built on first use and kept while the weights are
        unchanged (the fingerprint says so); the copy reports this embedder's fingerprint."""
        key = cache_key(self.fingerprint(), "derived-copy", kind)
        # kind -> (cache key, copy), kept in __dict__ (not submodules), also on embedders made without __init__
        copies: dict[str, tuple[str, Embedder]] = self.__dict__.setdefault("_copies", {})
        cached = copies.get(kind)
        if cached is None or cached[0] != key:
            copy = build()
            copy._copy_of = self.fingerprint()
            copies[kind] = cached = (key, copy)
        return cached[1]

    def quantized_int8(self) -> "Embedder":
        """This embedder with its backbone's linear layers in int8 (:func:`embedlab.models.quantize.quantize_int8`)."""
        from embedlab.models.quantize import quantize_int8

        return self._derived_copy("int8", lambda: quantize_int8(self))

    @property
    def runtime(self) -> str:
        """``onnx`` for a copy made by :meth:`onnx`, else ``torch``."""
        return getattr(getattr(self.source, "model", None), "runtime", "torch")

    def for_runtime(self, runtime: str | None = None, dtype: str = "fp32") -> tuple["Embedder", str]:
        """The embedder that runs ``runtime`` at ``dtype`` (this one, its int8 copy or its ONNX Runtime copy)
        and the resolved dtype. ``runtime=None`` is this embedder's own; with ``onnx``, ``auto`` is fp32 and
        fp32/int8 are the choices. The one place where runtime and dtype are resolved (encode, eval, the server)."""
        from embedlab.models.onnx_runtime import check_runtime

        runtime = check_runtime(runtime or self.runtime)
        fixed = getattr(self.source, "check_runtime", None)  # a source that runs one way only (a static table)
        if fixed is not None:
            return self, fixed(runtime, dtype)
        if self.runtime == "onnx":  # a copy made by onnx(): it runs its own graph
            if runtime != "onnx":
                raise ConfigError(
                    "this embedder runs on ONNX Runtime (made by Embedder.onnx()); use the original for runtime 'torch'"
                )
            own = INT8 if self.source.model.int8 else "fp32"
            if dtype not in ("fp32", "auto", own):
                raise ConfigError(f"this ONNX Runtime copy runs {own}; got dtype '{dtype}'")
            return self, "fp32"
        if runtime == "torch":
            dtype = resolve_dtype(dtype, self.device)
            return (self.quantized_int8(), dtype) if dtype == INT8 else (self, dtype)
        dtype = "fp32" if dtype == "auto" else resolve_dtype(dtype, self.device)
        if dtype not in ("fp32", INT8):
            raise ConfigError(f"runtime 'onnx' runs fp32 or int8; got dtype '{dtype}'")
        return self.onnx(int8=dtype == INT8), dtype

    def onnx(self, int8: bool = False) -> "Embedder":
        """This embedder with its backbone run by ONNX Runtime (:mod:`embedlab.models.onnx_runtime`; ``int8``:
        dynamically quantised), exported on first use into the on-disk cache and kept while the weights
        are unchanged. CPU only; a head that needs all hidden states is refused."""
        from embedlab.models.onnx_runtime import onnx_embedder

        return self._derived_copy("onnx-int8" if int8 else "onnx", lambda: onnx_embedder(self, int8=int8))

    # ------------------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """Everything that defines this embedder apart from weights."""
        source = self.source
        return {
            "embedlab_version": __version__,
            "source": getattr(source, "source", None),
            "architecture": source.config.model_type,
            "attention": self.attention,
            "pooling": self.head.name,
            "pooling_config": self.head.get_config(),
            "modules": [{"kind": m.kind, **m.get_config()} for m in self.chain],
            "normalize": self.normalize,
            "truncate_dim": self.truncate_dim,
            "append_eos": self.append_eos,
            "padding_side": self.padding_side,
            "max_length": self.max_length,
            "prompts": self.prompts,
            "default_prompt_name": self.default_prompt_name,
        }

    def fingerprint(self) -> str:
        """SHA-256 over the config (minus where it came from) and every weight: same vectors <=> same
        fingerprint. It cannot go stale: the cached digest is reused only while the config and every
        tensor's identity and in-place version counter are unchanged (an optimizer step, a
        ``load_state_dict`` or a LoRA merge all change them)."""
        if (
            getattr(self, "_copy_of", None) is not None
        ):  # an int8/ONNX copy is the same model: indexes built with it or its original match
            return self._copy_of
        cfg = {k: v for k, v in self.config_dict().items() if k not in ("source", "embedlab_version")}
        state = self.state_dict(keep_vars=True)
        key = (
            json.dumps(cfg, sort_keys=True),
            tuple((name, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype)) for name, t in state.items()),
        )
        if self._fingerprint is None or self._fingerprint[0] != key:
            self._fingerprint = (key, weights_fingerprint(key[0], state))
        return self._fingerprint[1]

    def save(self, path: str | os.PathLike, *, provenance: dict[str, Any] | None = None) -> None:
        """Save atomically in the sentence-transformers layout (see module docstring), or in the source's own
        layout where it has one (``save_embedder``: a static model is saved in model2vec's). ``provenance``
        (how the model was made) goes into ``embedlab.json``, or a static model's ``embedlab_static.json``."""
        saver = getattr(self.source, "save_embedder", None)
        if saver is not None:
            saver(self, path, provenance=provenance)
            return
        path = Path(path)
        self._warn_prompts_sentence_transformers_counts_differently()
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            self.source.save(tmp)
            for module in self.chain[1:]:
                save_root = getattr(module, "save_root", None)  # a head whose weights live in the root checkpoint
                if save_root is not None:
                    save_root(tmp, self.source)
            modules = [{"idx": 0, "name": "0", "path": "", "type": self.source.st_type()}]
            for idx, module in enumerate(self.chain[1:], start=1):
                folder = f"{idx}_{module.folder_name}"
                module.save(tmp / folder)
                modules.append({"idx": idx, "name": str(idx), "path": folder, "type": module.st_type()})
            (tmp / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
            st_config = {
                "__version__": _versions(),
                "model_type": getattr(self.head, "st_model_type", "SentenceTransformer"),
                "prompts": self.prompts,
                "default_prompt_name": self.default_prompt_name,
                "similarity_fn_name": getattr(self.head, "similarity", "cosine"),
            }
            (tmp / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2) + "\n")
            summary = self.config_dict() if provenance is None else {**self.config_dict(), "provenance": provenance}
            (tmp / EMBEDLAB_CONFIG).write_text(json.dumps(summary, indent=2) + "\n")

    def _warn_prompts_sentence_transformers_counts_differently(self) -> None:
        """Warn when the head leaves the instruction out of pooling and sentence-transformers would count a
        prompt's tokens differently (:func:`st_compat.prompt_count_mismatches`): ``SentenceTransformer(path)``
        with that prompt then pools other tokens than embedlab does (docs/models.md measures it)."""
        if not self.head.exclude_instruction or not any(self.prompts.values()) or not hasattr(self.source, "model"):
            return
        for m in st_compat.prompt_count_mismatches(self.tokenizer, self.prompts):
            fix = (
                f"the prompt {m.fix!r} (without the trailing whitespace) counts the same both ways with this tokenizer"
                if m.fix is not None
                else "no shorter prompt makes the two agree with this tokenizer"
            )
            warnings.warn(
                f"prompt {m.name!r}: sentence-transformers counts {m.alone} tokens for it alone, but in front of "
                f"a text it covers {m.in_context} (its trailing space joins the text's first word), so "
                f"SentenceTransformer(path) with include_prompt=False pools other tokens than embedlab and "
                f"gives other vectors; {fix}",
                UserWarning,
                stacklevel=3,
            )

    def describe(self) -> dict[str, Any]:
        """A summary for ``embedlab info`` (the source's ``describe_embedder`` where it has one)."""
        own = getattr(self.source, "describe_embedder", None)
        if own is not None:
            return own(self)
        bb = self.source
        cfg = bb.config
        return {
            "source": bb.source,
            "architecture": f"{type(bb.model).__name__} ({cfg.model_type})",
            "kind": "decoder" if bb.is_decoder else "encoder",
            "layers": bb.num_layers,
            "hidden size": bb.hidden_size,
            "output dim": self.output_dim,
            "backbone parameters": f"{bb.num_parameters():,}",
            "modules": " -> ".join(m.kind if m.kind != "pooling" else f"pooling:{m.name}" for m in self.chain),
            "pooling": f"{self.head.name} ({self.head.num_parameters():,} parameters)",
            "pooling config": self.head.get_config(),
            "attention": self.attention,
            "normalize": self.normalize,
            "truncate dim": self.truncate_dim,
            "append EOS": self.append_eos,
            "padding side": self.padding_side,
            "max length": self.max_length,
            "prompts": self.prompts or "none",
            "default prompt": self.default_prompt_name,
        }


# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def low_precision_cpu_attention(source: Any, device: torch.device, low_precision: bool) -> Iterator[None]:
    """Eager attention for bf16/fp16 on CPU, restored afterwards (measured: PyTorch's CPU
    flash-attention kernel is ~10% slower than the eager path in bf16)."""
    model = getattr(source, "model", None)
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switch = device.type == "cpu" and low_precision and impl == "sdpa"
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(impl)


def autocast(device: torch.device, dtype: torch.dtype) -> Any:
    if dtype == torch.float32:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def _versions() -> dict[str, str]:
    import sentence_transformers
    import transformers

    return {
        "embedlab": __version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "pytorch": torch.__version__,
    }


def source_class(root: Path) -> type[Module]:
    """The class of a saved chain's first module, through the registry: the type of ``modules.json``'s first
    entry (sentence-transformers' Transformer or StaticEmbedding, or ``embedlab.<kind>``), else the kind that
    ``config.json``'s ``model_type`` names (:data:`st_compat.CONFIG_MODEL_TYPES`: a model2vec folder without
    modules.json), else a transformer :class:`Backbone` (a plain HF directory or a hub id)."""
    modules_file = root / "modules.json"
    if root.is_dir() and modules_file.is_file():
        entries = read_json(modules_file, ConfigError, "modules.json")
        if isinstance(entries, list) and entries and all(isinstance(e, dict) for e in entries):
            first = min(entries, key=lambda e: e.get("idx", 0))
            cls = module_class_for(first.get("type", ""), root, first.get("path", ""))
            if getattr(cls, "is_source", False):
                return cls
    config_file = root / "config.json"
    if root.is_dir() and config_file.is_file():
        try:
            model_type = json.loads(config_file.read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            model_type = None  # the backbone's loader reports a broken config
        kind = st_compat.CONFIG_MODEL_TYPES.get(model_type) if isinstance(model_type, str) else None
        if kind is not None and kind in REGISTRY:
            return REGISTRY[kind]
    return Backbone


def _read_saved_chain(root: Path) -> tuple[list[Module], dict[str, Any]]:
    """The modules after the source of a saved embedder or sentence-transformers model in ``root``,
    and its prompts ([] and {} for a plain HF directory)."""
    modules_file = root / "modules.json"
    if not root.is_dir() or not modules_file.is_file():
        return [], {}
    entries = read_json(modules_file, ConfigError, "modules.json")
    if not isinstance(entries, list):
        raise ConfigError(f"{modules_file} must hold a list of modules")
    modules: list[Module] = []
    for entry in sorted(entries, key=lambda e: e.get("idx", 0)):
        mtype, mpath = entry.get("type", ""), entry.get("path", "")
        cls = module_class_for(mtype, root, mpath)
        if getattr(cls, "is_source", False):
            continue  # the source is loaded by from_pretrained
        modules.append(cls.load(root / mpath))
    prompts: dict[str, Any] = {}
    st_file = root / "config_sentence_transformers.json"
    if st_file.is_file():
        st = read_json(st_file, ConfigError, "sentence-transformers config")
        prompts["prompts"] = dict(st.get("prompts") or {})
        if st.get("default_prompt_name"):
            prompts["default_prompt_name"] = st["default_prompt_name"]
    legacy = root / EMBEDLAB_CONFIG  # embedlab < 0.2 kept the truncation here, not as a module
    if legacy.is_file() and not any(isinstance(m, Truncate) for m in modules):
        dim = read_json(legacy, ConfigError, "embedlab config").get("dim")
        if dim:
            at = next((i for i, m in enumerate(modules) if isinstance(m, Normalize)), len(modules))
            modules.insert(at, Truncate(int(dim)))
    return modules, prompts


__all__ = [
    "Embedder",
    "EncodeStats",
    "DTYPES",
    "INT8",
    "autocast",
    "low_precision_cpu_attention",
    "native_bf16",
    "resolve_dtype",
    "source_class",
]
