"""Tokenization shared by every path that turns text into token ids (encode, train, serve)."""
from embedlab.tokenize.prompted import Tokenized, tokenize_prompted

__all__ = ["Tokenized", "tokenize_prompted"]

# tokenizer quality report (issue 11, part 1)
from embedlab.tokenize.loading import LoadedTokenizer, load_tokenizer  # noqa: E402
from embedlab.tokenize.metrics import TokenizerMetrics, renyi_efficiency, split_words, tokenizer_metrics  # noqa: E402
from embedlab.tokenize.turkish import TurkishLexicon, TurkishScores, turkish_scores  # noqa: E402

__all__ += ["LoadedTokenizer", "load_tokenizer", "TokenizerMetrics", "renyi_efficiency", "split_words",
            "tokenizer_metrics", "TurkishLexicon", "TurkishScores", "turkish_scores"]
