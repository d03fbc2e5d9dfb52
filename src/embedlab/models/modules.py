"""The modules of an embedder chain, in the sentence-transformers spirit.

Each module is a small ``nn.Module`` that owns its config and its files: the constructor's
arguments named in ``config_keys`` *are* the saved config, so ``type(m).load(dir)`` after
``m.save(dir)`` rebuilds it. A module reads and writes keys of the features dict (see
:mod:`embedlab.models.features`). New modules (a debiasing projection, a static model) plug in by
subclassing :class:`Module` and registering with :func:`register`; the embedder never branches on
module types.

``modules.json`` names sentence-transformers' own class for the modules it knows (Transformer,
Pooling, Dense, Normalize), so such chains load in ``SentenceTransformer(path)``, and
``embedlab.<kind>`` for the others. Loading maps both through :data:`REGISTRY` and
:data:`embedlab.models.st_compat.ST_TYPES`; no import path read from disk is ever imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from embedlab import vectors
from embedlab.errors import ConfigError
from embedlab.io import atomic_path, read_json
from embedlab.models import st_compat
from embedlab.validation import int_range, positive_int

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

REGISTRY: dict[str, type["Module"]] = {}


def register(cls: type["Module"]) -> type["Module"]:
    """Class decorator: make ``cls`` loadable by its ``kind``."""
    if cls.kind in REGISTRY and REGISTRY[cls.kind] is not cls:
        raise ValueError(f"module kind {cls.kind!r} is registered twice")
    REGISTRY[cls.kind] = cls
    return cls


class Module(nn.Module):
    """Base class of chain modules.

    Class attributes: ``kind`` (registry key), ``config_keys`` (constructor arguments saved as the
    config), ``postprocess`` (True for truncation/normalisation, which the training losses do
    themselves), ``needs_hidden_states`` (ask the source for every layer's states).
    """

    kind: ClassVar[str]
    folder_name: ClassVar[str] = "Module"  # saved as <idx>_<folder_name>/ (sentence-transformers' names)
    config_keys: ClassVar[tuple[str, ...]] = ()
    postprocess: ClassVar[bool] = False
    needs_hidden_states: ClassVar[bool] = False

    # -- shape checks, run once by the Embedder at construction ---------------------------------
    def output_dim(self, input_dim: int) -> int:
        """The width of ``sentence_embedding`` after this module, given the width before it."""
        return input_dim

    def check(self, source: Any, input_dim: int) -> None:
        """Raise a one-line error if this module cannot follow a ``input_dim``-wide input from ``source``."""

    # -- config and files ------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.config_keys}

    def st_type(self) -> str:
        """The ``type`` written to modules.json."""
        return f"embedlab.{self.kind}"

    def has_weights(self) -> bool:
        return any(True for _ in self.parameters())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, path: str | Path) -> None:
        """Write ``config.json`` (+ ``model.safetensors``) into directory ``path``, atomically."""
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            (tmp / CONFIG_NAME).write_text(json.dumps(self.saved_config(), indent=2) + "\n")
            if self.has_weights():
                state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
                save_file(state, str(tmp / WEIGHTS_NAME))

    def saved_config(self) -> dict[str, Any]:
        return self.get_config()

    @classmethod
    def from_saved_config(cls, config: dict[str, Any]) -> "Module":
        if not isinstance(config, dict):
            raise ConfigError(f"{cls.kind}: the saved config must be a JSON object; got {type(config).__name__}")
        unknown = set(config) - set(cls.config_keys)
        if unknown:
            raise ConfigError(f"{cls.kind}: unknown config key(s) {sorted(unknown)}; expected {list(cls.config_keys)}")
        return cls(**config)

    @classmethod
    def load(cls, path: str | Path) -> "Module":
        path = Path(path)
        if not cls.config_keys and not (path / CONFIG_NAME).exists():
            config: dict[str, Any] = {}  # e.g. sentence-transformers' Normalize, which may save no file
        else:
            config = read_json(path / CONFIG_NAME, ConfigError, f"{cls.kind} config")
        module = cls.from_saved_config(config)
        if module.has_weights():
            module.load_state_dict(load_weights(path / WEIGHTS_NAME, cls.kind))
        return module

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.get_config().items())


def load_weights(path: Path, what: str, error: type[Exception] = ConfigError) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise error(f"{what} weights missing: {path}")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise error(f"{what} weights {path} are corrupt: {exc}") from None


@register
class Projection(Module):
    """A trainable linear map of the sentence embedding (sentence-transformers' ``Dense`` with the
    identity activation). ``init="identity"`` starts as the identity (square only), so an untrained
    projection leaves the pooled vector unchanged."""

    kind = "projection"
    folder_name = "Dense"
    config_keys = ("in_features", "out_features", "bias")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init: str = "default") -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            positive_int(f"projection: '{name}'", v)
        if init not in ("default", "identity"):
            raise ConfigError(f"projection: 'init' must be one of default, identity; got {init!r}")
        if init == "identity" and in_features != out_features:
            raise ConfigError(
                f"projection: identity init needs in_features == out_features; got {in_features}, {out_features}"
            )
        self.in_features, self.out_features, self.bias = in_features, out_features, bool(bias)
        self.linear = nn.Linear(in_features, out_features, bias=self.bias)
        if init == "identity":
            with torch.no_grad():
                self.linear.weight.copy_(torch.eye(in_features))
                if self.bias:
                    self.linear.bias.zero_()

    def output_dim(self, input_dim: int) -> int:
        return self.out_features

    def check(self, source: Any, input_dim: int) -> None:
        if input_dim != self.in_features:
            raise ConfigError(f"projection expects {self.in_features}-d input, the module before it gives {input_dim}")

    def st_type(self) -> str:
        return st_compat.ST_DENSE

    def saved_config(self) -> dict[str, Any]:
        return {**self.get_config(), "activation_function": st_compat.ST_IDENTITY}

    @classmethod
    def from_saved_config(cls, config: dict[str, Any]) -> "Module":
        config = dict(config)
        activation = config.pop("activation_function", st_compat.ST_IDENTITY)
        if activation not in (st_compat.ST_IDENTITY, "torch.nn.modules.linear.Identity"):
            raise ConfigError(f"projection: activation {activation!r} is not supported (identity only)")
        config.pop("module_input_name", None)
        config.pop("module_output_name", None)
        if config.pop("use_residual", False):
            raise ConfigError("projection: use_residual is not supported")
        return super().from_saved_config(config)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        features["sentence_embedding"] = self.linear(features["sentence_embedding"])
        return features


@register
class Truncate(Module):
    """Matryoshka truncation: keep the first ``truncate_dim`` dimensions (:func:`embedlab.vectors.truncate`)."""

    kind = "truncate"
    folder_name = "Truncate"
    config_keys = ("truncate_dim",)
    postprocess = True

    def __init__(self, truncate_dim: int) -> None:
        super().__init__()
        self.truncate_dim = positive_int("truncate: 'truncate_dim'", truncate_dim)

    def output_dim(self, input_dim: int) -> int:
        return self.truncate_dim

    def check(self, source: Any, input_dim: int) -> None:
        int_range("truncate_dim", self.truncate_dim, 1, input_dim)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        features["sentence_embedding"] = vectors.truncate(features["sentence_embedding"], self.truncate_dim)
        return features


@register
class Normalize(Module):
    """L2 normalisation of the sentence embedding (sentence-transformers' ``Normalize``; :func:`embedlab.vectors.normalize`)."""

    kind = "normalize"
    folder_name = "Normalize"
    postprocess = True

    def st_type(self) -> str:
        return st_compat.ST_NORMALIZE

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        features["sentence_embedding"] = vectors.normalize(features["sentence_embedding"])
        return features


def module_class_for(st_type: str, root: Path, path: str) -> type[Module]:
    """The registered class for a modules.json ``type`` (sentence-transformers' or ``embedlab.<kind>``)."""
    kind = st_compat.kind_for_type(st_type)
    if kind is None or kind not in REGISTRY:
        raise ConfigError(
            f"{root}: module type {st_type!r} (in {path or '.'}) is not supported by embedlab; "
            f"supported: {', '.join(sorted(REGISTRY))} and sentence-transformers' "
            "Transformer, Pooling, Dense, Normalize"
        )
    return REGISTRY[kind]
