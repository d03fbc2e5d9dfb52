"""Compressed vector indexes: codecs named by one string, rescoring, a persistent directory format;
embedding shards (``embed-corpus``) and export to vector databases.

``read_corpus`` is :func:`embedlab.corpus.read_documents` (the one document reader), kept under this name
for the CLI until it imports from :mod:`embedlab.corpus`."""

from embedlab.corpus import read_documents as read_corpus
from embedlab.index.codecs import Codec, CodecError, parse_codec
from embedlab.index.store import IndexStoreError, VectorIndex

__all__ = ["Codec", "CodecError", "IndexStoreError", "VectorIndex", "parse_codec", "read_corpus"]
