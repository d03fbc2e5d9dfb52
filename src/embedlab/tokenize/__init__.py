"""Tokenization shared by every path that turns text into token ids (encode, train, serve)."""
from embedlab.tokenize.prompted import Tokenized, tokenize_prompted

__all__ = ["Tokenized", "tokenize_prompted"]
