"""TEMPORARY shim (issue 23.3): vocabulary expansion moved to :mod:`embedlab.vocab`.

Only the CLI's ``from embedlab.tokenize.vocab import extend_model`` still uses this path; delete this
file once the CLI imports ``from embedlab.vocab import extend_model`` (it breaks the tokenize-is-a-leaf
layering while it exists).
"""
from __future__ import annotations

from embedlab.vocab.extend import extend_model

__all__ = ["extend_model"]
