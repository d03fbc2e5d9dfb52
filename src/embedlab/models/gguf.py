"""Moved to :mod:`embedlab.sources.gguf` (a leaf package); this name stays importable."""

from __future__ import annotations

from embedlab.sources.gguf import converted_dir

__all__ = ["converted_dir"]
