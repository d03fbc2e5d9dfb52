"""Embedder = backbone + attention mode + pooling head + optional L2 norm + optional Matryoshka
truncation + named prompts. Saves in the sentence-transformers layout.

Layout written by :meth:`Embedder.save`::

    modules.json                      # 0: Transformer (root), 1: pooling, [2: Normalize]
    config_sentence_transformers.json # prompts, default prompt, similarity
    sentence_bert_config.json         # max_seq_length
    config.json, model.safetensors, tokenizer files   # the backbone (is_causal persisted)
    1_Pooling/config.json [+ model.safetensors for trainable heads]
    2_Normalize/config.json
    embedlab.json                     # what sentence-transformers has no key for (dim, append_eos, ...)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embedlab import __version__
from embedlab.errors import EmbedlabError, InputError, PoolingError
from embedlab.io import atomic_path
from embedlab.models.backbone import Backbone, resolve_source
from embedlab.models.batching import pad_batch, token_budget_batches
from embedlab.models.pooling import MultiLayerPooling, PoolingHead, build_head, exclude_prefix

log = logging.getLogger(__name__)

EMBEDLAB_CONFIG = "embedlab.json"
ST_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
ST_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
ST_NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"
_ST_TRANSFORMER_TYPES = {ST_TRANSFORMER, "sentence_transformers.models.Transformer"}
_ST_POOLING_TYPES = {ST_POOLING, "sentence_transformers.models.Pooling"}
_ST_NORMALIZE_TYPES = {ST_NORMALIZE, "sentence_transformers.models.Normalize"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    def __init__(
        self,
        backbone: Backbone,
        head: PoolingHead,
        *,
        normalize: bool = True,
        dim: int | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        append_eos: bool = False,
        padding_side: str = "right",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.normalize = bool(normalize)
        self.dim = dim
        self.prompts = dict(prompts or {})
        self.default_prompt_name = default_prompt_name
        self.append_eos = bool(append_eos)
        self.padding_side = padding_side
        self.last_stats = EncodeStats()
        self._fingerprint: str | None = None
        self._validate()

    # ------------------------------------------------------------------------------------------
    def _validate(self) -> None:
        bb, head = self.backbone, self.head
        if head.needs_cls_token and bb.is_decoder:
            raise PoolingError(
                f"pooling '{head.name}' needs an encoder's [CLS] token, but {bb.source} is a decoder "
                f"({bb.config.model_type}); use last_token, mean, weighted_mean, latent_attention or multi_layer"
            )
        if head.dim != bb.hidden_size:
            raise PoolingError(f"pooling '{head.name}' expects {head.dim}-d states, the backbone gives {bb.hidden_size}")
        if isinstance(head, MultiLayerPooling) and head.num_layers != bb.num_layers:
            raise PoolingError(f"multi_layer pooling was built for {head.num_layers} layers, the backbone has {bb.num_layers}")
        if self.dim is not None and not (isinstance(self.dim, int) and 0 < self.dim <= head.output_dim):
            raise EmbedlabError(f"dim must be an integer in 1..{head.output_dim}, got {self.dim!r}")
        if self.padding_side not in ("left", "right"):
            raise EmbedlabError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        if self.append_eos and bb.tokenizer.eos_token_id is None:
            raise EmbedlabError(f"append_eos is set but the tokenizer of {bb.source} has no EOS token")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise EmbedlabError(f"default prompt '{self.default_prompt_name}' is not among the prompts {list(self.prompts)}")
        for key, value in self.prompts.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise EmbedlabError("prompts must map names to strings")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        *,
        pooling: str | None = None,
        attention: str | None = None,
        normalize: bool | None = None,
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
        a GGUF file or a hub id. Settings saved with the model are defaults; arguments override them.
        """
        target, source = resolve_source(model)
        backbone = Backbone.from_source(
            target, source, attention=attention, attn_implementation=attn_implementation, max_length=max_length
        )
        saved = _read_saved_settings(Path(target))
        head: PoolingHead | None = saved.pop("head", None)
        same_head = head is not None and (pooling is None or pooling == head.name) and not pooling_options and preset is None
        if not same_head:
            name = pooling or (head.name if head is not None else ("last_token" if backbone.is_decoder else "mean"))
            options = dict(pooling_options or {})
            if name == "multi_layer" and "layer_summary" not in options:
                options["layer_summary"] = "last_token" if backbone.attention == "causal" else "mean"
            head = build_head(name, backbone.hidden_size, num_layers=backbone.num_layers, preset=preset, **options)
        assert head is not None
        if append_eos is None:
            append_eos = saved.get("append_eos", backbone.is_decoder and head.name == "last_token")
        return cls(
            backbone,
            head,
            normalize=saved.get("normalize", True) if normalize is None else normalize,
            dim=saved.get("dim") if dim is None else dim,
            prompts={**saved.get("prompts", {}), **(prompts or {})},
            default_prompt_name=default_prompt_name or saved.get("default_prompt_name"),
            append_eos=append_eos,
            padding_side=padding_side or saved.get("padding_side", "right"),
        )

    load = from_pretrained

    # ------------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self.backbone.tokenizer

    @property
    def attention(self) -> str:
        return self.backbone.attention

    @property
    def output_dim(self) -> int:
        return self.dim or self.head.output_dim

    @property
    def max_length(self) -> int:
        return self.backbone.max_length

    def resolve_prompt(self, prompt_name: str | None = None, prompt: str | None = None) -> str:
        if prompt is not None and prompt_name is not None:
            raise EmbedlabError("give either prompt_name or prompt, not both")
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return ""
        if name not in self.prompts:
            known = ", ".join(self.prompts) or "none defined"
            raise EmbedlabError(f"unknown prompt '{name}' (prompts: {known})")
        return self.prompts[name]

    def prompt_length(self, prompt: str) -> int:
        """Tokens the prompt occupies at the start of a tokenized text (leading special tokens included)."""
        if not prompt:
            return 0
        with_special = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        plain = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for offset in range(len(with_special) - len(plain) + 1):  # leading special tokens ([CLS], BOS)
            if with_special[offset : offset + len(plain)] == plain:
                return offset + len(plain)
        return len(plain)

    # ------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """Token ids per text (special tokens, truncation and the optional EOS applied) and the
        number of texts that were truncated."""
        tok = self.tokenizer
        limit = self.max_length - (1 if self.append_eos else 0)
        ids = tok(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        too_long = [i for i, seq in enumerate(ids) if len(seq) > limit]
        if too_long:
            cut = tok([texts[i] for i in too_long], add_special_tokens=True, truncation=True, max_length=limit)["input_ids"]
            for i, seq in zip(too_long, cut):
                ids[i] = seq
        if self.append_eos:
            eos = tok.eos_token_id
            ids = [seq if seq and seq[-1] == eos else [*seq, eos] for seq in ids]
        for i, seq in enumerate(ids):
            if not seq:
                raise InputError(
                    f"text {i} gives no tokens ({texts[i]!r}): this model adds no special tokens to an empty text; "
                    "drop it or enable append_eos"
                )
        return ids, len(too_long)

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int = 0) -> dict[str, Any]:
        """Backbone forward + pool mask; returns the features a head reads (float32)."""
        features = self.backbone(input_ids, attention_mask, output_hidden_states=self.head.needs_hidden_states)
        features["token_embeddings"] = features["token_embeddings"].float()
        if "hidden_states" in features:
            features["hidden_states"] = tuple(h.float() for h in features["hidden_states"])
        if self.head.exclude_instruction and prompt_length:
            prefix = torch.full((input_ids.shape[0],), prompt_length, device=input_ids.device)
            features["pool_mask"] = exclude_prefix(attention_mask, prefix)
        else:
            features["pool_mask"] = attention_mask
        return features

    def postprocess(self, pooled: torch.Tensor) -> torch.Tensor:
        """Matryoshka truncation, then L2 normalisation."""
        if self.dim is not None:
            pooled = pooled[:, : self.dim]
        if self.normalize:
            pooled = F.normalize(pooled, p=2, dim=-1)
        return pooled

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int = 0) -> torch.Tensor:
        return self.postprocess(self.head(self.forward_features(input_ids, attention_mask, prompt_length)))

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
        show_progress: bool | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed texts: length-sorted batches under a token budget, inference mode, optional bf16.

        ``token_budget`` bounds padded tokens per batch (default 2,048 on CPU, where small batches of
        similar length are fastest, and 32,768 on GPU); ``max_batch_size`` defaults to 64 / 512.
        Empty strings are encoded as the model would (e.g. ``[CLS] [SEP]`` for BERT); a text that
        gives no tokens at all (a decoder without BOS) raises :class:`InputError`.
        """
        single = isinstance(texts, str)
        if single:
            texts = [texts]  # type: ignore[list-item]
        if not isinstance(texts, Sequence):
            raise InputError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"text {i} is {type(t).__name__}, not str")
        if dtype not in DTYPES:
            raise EmbedlabError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}")
        if output not in ("numpy", "torch"):
            raise EmbedlabError("output must be 'numpy' or 'torch'")
        start = time.perf_counter()
        pre = self.resolve_prompt(prompt_name, prompt)
        full = [pre + t for t in texts] if pre else list(texts)
        n = len(full)
        result = torch.empty((n, self.output_dim), dtype=torch.float32)
        stats = EncodeStats(texts=n, max_length=self.max_length)
        if n:
            ids, stats.truncated = self.tokenize(full)
            lengths = [len(s) for s in ids]
            stats.tokens = sum(lengths)
            plen = self.prompt_length(pre) if self.head.exclude_instruction else 0
            device = next(self.parameters()).device
            on_cpu = device.type == "cpu"
            token_budget = token_budget or (2048 if on_cpu else 32768)
            max_batch_size = max_batch_size or (64 if on_cpu else 512)
            pad_id = self.tokenizer.pad_token_id
            if show_progress is None:
                show_progress = n >= 512 and sys.stderr.isatty()
            from tqdm.auto import tqdm

            was_training = self.training
            self.eval()
            try:
                with torch.inference_mode(), _autocast(device, DTYPES[dtype]), low_precision_cpu_attention(
                    self.backbone.model, device, dtype != "fp32"), tqdm(
                    total=n, disable=not show_progress, unit="text", desc="encode", file=sys.stderr
                ) as bar:
                    for batch in token_budget_batches(lengths, token_budget, max_batch_size):
                        input_ids, mask = pad_batch([ids[i] for i in batch], pad_id, self.padding_side)
                        out = self.forward(input_ids.to(device), mask.to(device), plen)
                        result[torch.as_tensor(batch)] = out.float().cpu()
                        stats.batches += 1
                        bar.update(len(batch))
            finally:
                self.train(was_training)
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

    # ------------------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """Everything that defines this embedder apart from weights."""
        return {
            "embedlab_version": __version__,
            "source": self.backbone.source,
            "architecture": self.backbone.config.model_type,
            "attention": self.attention,
            "pooling": self.head.name,
            "pooling_config": self.head.get_config(),
            "normalize": self.normalize,
            "dim": self.dim,
            "append_eos": self.append_eos,
            "padding_side": self.padding_side,
            "max_length": self.max_length,
            "prompts": self.prompts,
            "default_prompt_name": self.default_prompt_name,
        }

    def fingerprint(self) -> str:
        """SHA-256 over the config (minus where it came from) and every weight: same vectors <=> same fingerprint."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            cfg = {k: v for k, v in self.config_dict().items() if k not in ("source", "embedlab_version")}
            h.update(json.dumps(cfg, sort_keys=True).encode())
            for name, tensor in sorted(self.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def save(self, path: str | os.PathLike) -> None:
        """Save atomically in the sentence-transformers layout (see module docstring)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            self.backbone.save(tmp)
            self.head.save(tmp / "1_Pooling")
            modules = [
                {"idx": 0, "name": "0", "path": "", "type": ST_TRANSFORMER},
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": ST_POOLING if self.head.st_pooling_mode else f"{type(self.head).__module__}.{type(self.head).__name__}",
                },
            ]
            if self.normalize:
                (tmp / "2_Normalize").mkdir()
                (tmp / "2_Normalize" / "config.json").write_text("{}\n")
                modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": ST_NORMALIZE})
            (tmp / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
            st_config = {
                "__version__": _versions(),
                "model_type": "SentenceTransformer",
                "prompts": self.prompts,
                "default_prompt_name": self.default_prompt_name,
                "similarity_fn_name": "cosine",
            }
            (tmp / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2) + "\n")
            (tmp / EMBEDLAB_CONFIG).write_text(json.dumps(self.config_dict(), indent=2) + "\n")

    def describe(self) -> dict[str, Any]:
        """A summary for ``embedlab info``."""
        bb = self.backbone
        cfg = bb.config
        return {
            "source": bb.source,
            "architecture": f"{type(bb.model).__name__} ({cfg.model_type})",
            "kind": "decoder" if bb.is_decoder else "encoder",
            "layers": bb.num_layers,
            "hidden size": bb.hidden_size,
            "output dim": self.output_dim,
            "backbone parameters": f"{bb.num_parameters():,}",
            "pooling": f"{self.head.name} ({self.head.num_parameters():,} parameters)",
            "pooling config": self.head.get_config(),
            "attention": self.attention,
            "normalize": self.normalize,
            "append EOS": self.append_eos,
            "padding side": self.padding_side,
            "max length": self.max_length,
            "prompts": self.prompts or "none",
            "default prompt": self.default_prompt_name,
        }


# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def low_precision_cpu_attention(model: Any, device: torch.device, low_precision: bool) -> Iterator[None]:
    """Eager attention for bf16/fp16 on CPU, restored afterwards (measured: PyTorch's CPU
    flash-attention kernel is ~10% slower than the eager path in bf16)."""
    impl = getattr(model.config, "_attn_implementation", None)
    switch = device.type == "cpu" and low_precision and impl == "sdpa"
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(impl)


def _autocast(device: torch.device, dtype: torch.dtype) -> Any:
    if dtype == torch.float32:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def _versions() -> dict[str, str]:
    import sentence_transformers
    import transformers

    return {"embedlab": __version__, "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__, "pytorch": torch.__version__}


def _read_saved_settings(root: Path) -> dict[str, Any]:
    """Settings of a saved embedder or sentence-transformers model in ``root`` ({} for a plain HF dir)."""
    settings: dict[str, Any] = {}
    modules_file = root / "modules.json"
    if not root.is_dir() or not modules_file.is_file():
        return settings
    try:
        modules = json.loads(modules_file.read_text())
    except json.JSONDecodeError as exc:
        raise EmbedlabError(f"{modules_file} is not valid JSON ({exc.msg})") from None
    settings["normalize"] = False
    for module in modules:
        mtype, mpath = module.get("type", ""), module.get("path", "")
        if mtype in _ST_TRANSFORMER_TYPES:
            continue
        if mtype in _ST_NORMALIZE_TYPES:
            settings["normalize"] = True
        elif mtype in _ST_POOLING_TYPES or mtype.startswith("embedlab."):
            settings["head"] = PoolingHead.load(root / mpath)
        else:
            raise EmbedlabError(f"{root}: module type {mtype} is not supported by embedlab (Transformer, Pooling, Normalize only)")
    st_file = root / "config_sentence_transformers.json"
    if st_file.is_file():
        st = json.loads(st_file.read_text())
        settings["prompts"] = dict(st.get("prompts") or {})
        if st.get("default_prompt_name"):
            settings["default_prompt_name"] = st["default_prompt_name"]
    cfg_file = root / EMBEDLAB_CONFIG
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
        for key in ("dim", "append_eos", "padding_side", "prompts", "default_prompt_name", "normalize"):
            if key in cfg:
                settings[key] = cfg[key]
    return settings


__all__ = ["Embedder", "EncodeStats"]
