"""Compressed vector indexes: codecs named by one string, rescoring, a persistent directory format."""
from embedlab.index.codecs import Codec, CodecError, parse_codec
from embedlab.index.store import IndexStoreError, VectorIndex, read_corpus

__all__ = ["Codec", "CodecError", "IndexStoreError", "VectorIndex", "parse_codec", "read_corpus"]
