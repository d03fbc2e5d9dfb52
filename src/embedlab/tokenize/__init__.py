"""Tokenization shared by every path that turns text into token ids (encode, train, serve), and the
tokenizer quality report (fertility, parity, Rényi efficiency, the Turkish %TR / %Pure lexicons).

A leaf of the package: it imports no other embedlab layer but ``errors`` and ``io``. The report's
modules (:mod:`~embedlab.tokenize.loading`, :mod:`~embedlab.tokenize.metrics`,
:mod:`~embedlab.tokenize.turkish`) are imported on first use, so encoding does not pay for them.
Vocabulary expansion (model surgery) lives above the models, in :mod:`embedlab.vocab`.
"""

from __future__ import annotations

from embedlab.tokenize.prompted import Tokenized, tokenize_prompted

# the quality report (issue 11, part 1): imported on first use
_REPORT_EXPORTS = {
    "LoadedTokenizer": "loading",
    "load_tokenizer": "loading",
    "TokenizerMetrics": "metrics",
    "renyi_efficiency": "metrics",
    "split_words": "metrics",
    "tokenizer_metrics": "metrics",
    "TurkishLexicon": "turkish",
    "TurkishScores": "turkish",
    "turkish_scores": "turkish",
}

__all__ = ["Tokenized", "tokenize_prompted", *_REPORT_EXPORTS]


def __getattr__(name: str):  # PEP 562
    if name in _REPORT_EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"embedlab.tokenize.{_REPORT_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'embedlab.tokenize' has no attribute {name!r}")
