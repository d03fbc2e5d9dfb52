"""Where a model's files come from: the packaged aliases, the resolution of a model name (alias, local
directory, GGUF file, hub id) to a loadable path, and the one-time GGUF -> Hugging Face conversion.

A leaf package: it imports :mod:`embedlab.errors`, :mod:`embedlab.io` and :mod:`embedlab.settings`
(transformers and safetensors lazily), never :mod:`embedlab.models`, so the tokenizer tools, the CLI and
the model code all resolve names the same way without importing one another.
"""

from __future__ import annotations

from embedlab.sources.aliases import ALIASES, DEFAULT_MODEL, ModelAlias, alias_names
from embedlab.sources.gguf import converted_dir
from embedlab.sources.resolve import from_hub_or_cache, hub_reachable, resolve_source

__all__ = [
    "ALIASES",
    "DEFAULT_MODEL",
    "ModelAlias",
    "alias_names",
    "converted_dir",
    "from_hub_or_cache",
    "hub_reachable",
    "resolve_source",
]
