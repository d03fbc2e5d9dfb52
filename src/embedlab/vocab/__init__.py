"""Vocabulary expansion: choose domain tokens, add them to a fast tokenizer as real vocabulary entries,
resize a model's embeddings and initialise the new rows (six methods from the literature).

Model surgery, so it sits above :mod:`embedlab.models` (and uses :mod:`embedlab.tokenize` below it):

* :mod:`~embedlab.vocab.selection`: which tokens to add (tokens saved, or a BPE trained on the corpus);
* :mod:`~embedlab.vocab.extend`: the tokenizer edit, the resize and ``embedlab vocab extend``;
* :mod:`~embedlab.vocab.inits`: the initialisations (random, mean, multivariate, FVT, WECHSEL, CW2V).

Importing this package is cheap; the names below load their module (and torch) on first use.
"""

from __future__ import annotations

_EXPORTS = {
    "EXTENSION_FILE": "extend",
    "Extension": "extend",
    "NewToken": "extend",
    "choose_candidates": "extend",
    "extend_embedder": "extend",
    "extend_model": "extend",
    "extend_tokenizer": "extend",
    "resize_and_init": "extend",
    "save_extended": "extend",
    "INIT_METHODS": "inits",
    "InitContext": "inits",
    "PAPERS": "inits",
    "initialize": "inits",
    "Candidate": "selection",
    "SELECT_MODES": "selection",
    "select_bpe": "selection",
    "select_tokens_saved": "selection",
    "select_words": "selection",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):  # PEP 562
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"embedlab.vocab.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'embedlab.vocab' has no attribute {name!r}")
