"""Moved to :mod:`embedlab.sources.aliases` (a leaf package); this name stays importable."""

from __future__ import annotations

from embedlab.sources.aliases import ALIASES, DEFAULT_MODEL, ModelAlias, alias_names

__all__ = ["ALIASES", "DEFAULT_MODEL", "ModelAlias", "alias_names"]
