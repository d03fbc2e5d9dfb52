"""Backbones: a Hugging Face base model + its tokenizer, with a chosen attention mode.

Model names (alias, directory, GGUF file, hub id) are resolved by :mod:`embedlab.sources`; the names
``resolve_source`` and ``hub_reachable`` stay importable from here.

Attention mode for decoders uses transformers >= 5.2's ``config.is_causal`` (read by the mask
builders and by the SDPA/flash kernels), persisted in ``config.json`` together with
``use_bidirectional_attention`` for other servers (TEI, llama.cpp). No monkey-patching.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from embedlab.errors import ConfigError, EmbedlabError, ModelNotFoundError
from embedlab.io import read_json
from embedlab.models import st_compat
from embedlab.models.batching import pad_batch
from embedlab.models.features import exclude_prefix
from embedlab.models.modules import Module, register
from embedlab.sources.resolve import from_hub_or_cache, resolve_source
from embedlab.tokenize.prompted import Tokenized, tokenize_prompted
from embedlab.validation import positive_int

log = logging.getLogger(__name__)

ATTENTION_MODES = ("causal", "bidirectional")
DEFAULT_MAX_LENGTH = 512
BACKBONE_CONFIG = "embedlab_backbone.json"


def is_decoder_config(config: Any) -> bool:
    """A causal-LM family (Llama, Mistral, Qwen, Gemma, ...) rather than an encoder (BERT, ...)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def check_transformers_version(minimum: str = "5.2") -> None:
    """Refuse transformers older than 5.2: their mask builders ignore ``config.is_causal``, so a
    bidirectional decoder would silently stay causal."""
    import transformers
    from packaging.version import InvalidVersion, Version

    found = str(transformers.__version__)
    try:
        too_old = Version(found) < Version(minimum)
    except InvalidVersion:
        too_old = False  # an unparsable (source) build: let it through
    if too_old:
        raise EmbedlabError(
            f"transformers {found} is too old: embedlab needs transformers >= {minimum} (older versions keep "
            f"decoders causal even in bidirectional mode); upgrade with pip install 'transformers>={minimum}'"
        )


@register
class Backbone(Module):
    """The source module: a transformer base model (no LM head) with its tokenizer, attention mode and
    tokenization settings (``max_length``, ``append_eos``, ``padding_side``). It tokenizes texts and
    writes ``token_embeddings``, ``pool_mask`` and, on request, ``hidden_states`` into the features."""

    kind = "transformer"
    config_keys = ("max_length", "append_eos", "padding_side")
    is_source = True

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        source: str,
        max_length: int,
        append_eos: bool = False,
        padding_side: str = "right",
    ) -> None:
        super().__init__()
        if padding_side not in ("left", "right"):
            raise ConfigError(f"backbone: 'padding_side' must be one of left, right; got {padding_side!r}")
        if append_eos and tokenizer.eos_token_id is None:
            raise ConfigError(f"append_eos is set but the tokenizer of {source} has no EOS token")
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.max_length = int(max_length)
        self.append_eos = bool(append_eos)
        self.padding_side = padding_side

    def with_options(self, **changes: Any) -> "Backbone":
        """A new source sharing this one's model and tokenizer, with other tokenization settings."""
        settings = {**self.get_config(), **changes}
        unknown = set(settings) - set(self.config_keys)
        if unknown:
            raise ConfigError(f"backbone: unknown option(s) {sorted(unknown)}; options: {list(self.config_keys)}")
        return Backbone(self.model, self.tokenizer, source=self.source, **settings)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_name(
        cls,
        name: str | os.PathLike,
        *,
        attention: str | None = None,
        attn_implementation: str = "sdpa",
        dtype: torch.dtype = torch.float32,
        max_length: int | None = None,
    ) -> "Backbone":
        target, source = resolve_source(name)
        return cls.from_source(
            target,
            source,
            attention=attention,
            attn_implementation=attn_implementation,
            dtype=dtype,
            max_length=max_length,
        )

    @classmethod
    def from_source(
        cls,
        target: str,
        source: str,
        *,
        attention: str | None = None,
        attn_implementation: str = "sdpa",
        dtype: torch.dtype = torch.float32,
        max_length: int | None = None,
        append_eos: bool | None = None,
        padding_side: str | None = None,
    ) -> "Backbone":
        """Load from what :func:`resolve_source` returned. Settings saved with the model are defaults."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        check_transformers_version()
        if attention is not None and attention not in ATTENTION_MODES:
            raise ConfigError(f"unknown attention mode '{attention}'; choose causal or bidirectional")
        is_hub = source.startswith("hub id")

        def load_with(loader: Any, **kwargs: Any) -> Any:
            if is_hub:
                return from_hub_or_cache(loader, target, **kwargs)
            try:
                return loader.from_pretrained(target, **kwargs)
            except (OSError, ValueError) as exc:
                raise ModelNotFoundError(f"could not load {source}: {str(exc).splitlines()[0]}") from None

        _quiet_transformers()
        config = load_with(AutoConfig)
        decoder = is_decoder_config(config)
        if decoder:
            mode = attention or ("causal" if getattr(config, "is_causal", True) else "bidirectional")
            _set_config_attention(config, mode)
        elif attention == "causal":
            raise ConfigError(f"{source} is an encoder ({config.model_type}): it is bidirectional by design")
        tokenizer = load_with(AutoTokenizer)
        model = load_with(AutoModel, config=config, attn_implementation=attn_implementation, dtype=dtype)
        model.eval()
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        rows = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > rows:
            # e.g. a GGUF tokenizer with added special tokens beyond the embedding table
            log.warning(
                "tokenizer has %d entries but the model %d embedding rows: resizing (mean init)", len(tokenizer), rows
            )
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        saved = _read_backbone_settings(Path(target))
        return cls(
            model,
            tokenizer,
            source=source,
            max_length=_resolve_max_length(target, config, tokenizer, max_length),
            append_eos=saved.get("append_eos", False) if append_eos is None else append_eos,
            padding_side=padding_side or saved.get("padding_side", "right"),
        )

    # -- properties ----------------------------------------------------------------------------
    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def is_decoder(self) -> bool:
        return is_decoder_config(self.config)

    @property
    def attention(self) -> str:
        if not self.is_decoder:
            return "bidirectional"
        return "causal" if getattr(self.config, "is_causal", True) else "bidirectional"

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def st_type(self) -> str:
        return st_compat.ST_TRANSFORMER

    # -- texts -> features ---------------------------------------------------------------------
    def pad(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of a batch: the tokenizer's pad id on ``padding_side``."""
        return pad_batch(ids, self.tokenizer.pad_token_id, self.padding_side)

    def tokenize(self, texts: Sequence[str], prompts: Sequence[str] | str | None = None) -> Tokenized:
        """Token ids of ``prompts[i] + texts[i]`` and the prompt's token count in each (:mod:`embedlab.tokenize`)."""
        return tokenize_prompted(self.tokenizer, texts, prompts, max_length=self.max_length, append_eos=self.append_eos)

    def forward(self, features: dict[str, Any], output_hidden_states: bool = False) -> dict[str, Any]:
        mask = features["attention_mask"]
        out = self.model(
            input_ids=features["input_ids"],
            attention_mask=mask,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        features["token_embeddings"] = out.last_hidden_state.float()
        if output_hidden_states:
            features["hidden_states"] = tuple(
                h.float() for h in out.hidden_states[1:]
            )  # layers 1..L, embeddings excluded
        prompt_length = features.get("prompt_length")
        features["pool_mask"] = mask if prompt_length is None else exclude_prefix(mask, prompt_length)
        return features

    # -- save ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the HF model, tokenizer, ``sentence_bert_config.json`` and the tokenization settings into
        ``path`` (the chain's root; not atomic alone: the embedder's save is)."""
        path = Path(path)
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        (path / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": self.max_length, "do_lower_case": False}, indent=2) + "\n"
        )
        (path / BACKBONE_CONFIG).write_text(json.dumps(self.get_config(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> "Backbone":  # type: ignore[override]
        """Load by name (alias, directory, GGUF file or hub id); keyword arguments as :meth:`from_name`."""
        return cls.from_name(path, **kwargs)


def _read_backbone_settings(root: Path) -> dict[str, Any]:
    """Tokenization settings saved with a model (``embedlab_backbone.json``, or embedlab.json before 0.2)."""
    for name, keys in (
        (BACKBONE_CONFIG, ("append_eos", "padding_side")),
        ("embedlab.json", ("append_eos", "padding_side")),
    ):
        f = root / name
        if f.is_file():
            cfg = read_json(f, ConfigError, "backbone settings")
            return {k: cfg[k] for k in keys if k in cfg}
    return {}


def _quiet_transformers() -> None:
    """Weight-loading progress bars and notices are noise for an embedding library's users."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _set_config_attention(config: Any, mode: str) -> None:
    config.is_causal = mode == "causal"
    if mode == "bidirectional":
        config.use_bidirectional_attention = True  # read by TEI and llama.cpp converters
    elif getattr(config, "use_bidirectional_attention", None):
        config.use_bidirectional_attention = False


def _resolve_max_length(target: str, config: Any, tokenizer: Any, requested: int | None) -> int:
    limit = getattr(config, "max_position_embeddings", None) or 10**9
    if requested is not None:
        positive_int("max_length", requested)
        if requested > limit:
            raise EmbedlabError(f"max_length {requested} exceeds the model's {limit} positions")
        return requested
    st_config = Path(target) / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if value:
            return int(min(value, limit))
    tok_max = getattr(tokenizer, "model_max_length", None) or 10**9
    return int(min(tok_max, limit, DEFAULT_MAX_LENGTH))
