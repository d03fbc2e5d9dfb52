"""Tokenization shared by every path that turns text into token ids (encode, train, serve)."""
from embedlab.tokenize.prompted import Tokenized, tokenize_prompted

__all__ = ["Tokenized", "tokenize_prompted"]

# tokenizer quality report (issue 11, part 1)
from embedlab.tokenize.loading import LoadedTokenizer, load_tokenizer  # noqa: E402
from embedlab.tokenize.metrics import TokenizerMetrics, renyi_efficiency, split_words, tokenizer_metrics  # noqa: E402
from embedlab.tokenize.turkish import TurkishLexicon, TurkishScores, turkish_scores  # noqa: E402

__all__ += ["LoadedTokenizer", "load_tokenizer", "TokenizerMetrics", "renyi_efficiency", "split_words",
            "tokenizer_metrics", "TurkishLexicon", "TurkishScores", "turkish_scores"]

# vocabulary expansion (issue 11, part 2): imported on first use (it needs torch; the report above does not)
_VOCAB_EXPORTS = {"extend_embedder": "vocab", "extend_model": "vocab", "extend_tokenizer": "vocab",
                  "resize_and_init": "vocab", "INIT_METHODS": "vocab_init", "select_words": "vocab_select",
                  "select_bpe": "vocab_select"}
__all__ += list(_VOCAB_EXPORTS)


def __getattr__(name: str):  # PEP 562
    if name in _VOCAB_EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"embedlab.tokenize.{_VOCAB_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'embedlab.tokenize' has no attribute {name!r}")
