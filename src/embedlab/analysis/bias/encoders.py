"""What embeds: static word vectors, and ``encode`` for any encoder (Embedder, StaticVectors, callable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embedlab.errors import ConfigError, InputError


class StaticVectors:
    """Static word vectors (a word2vec or GloVe text file, or a dict). ``encode`` looks words up;
    ``has`` says which words the vocabulary holds."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[0] != len(words) or not len(words):
            raise InputError("static vectors: need one row per word and at least one word")
        self.words = list(words)
        self.vectors = vectors
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_dict(cls, mapping: dict[str, Sequence[float]]) -> "StaticVectors":
        return cls(list(mapping), np.array([np.asarray(v, float) for v in mapping.values()]))

    @classmethod
    def from_file(cls, path: str | Path, limit: int | None = None) -> "StaticVectors":
        """word2vec text (an optional ``count dim`` header line) or GloVe text: ``word v1 v2 ...``."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"word vector file not found: {path}")
        words, rows, dim = [], [], None
        with open(path, encoding="utf-8", errors="strict") as f:
            for i, line in enumerate(f, 1):
                parts = line.rstrip("\n").rstrip().split(" ")
                if i == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header
                if len(parts) < 3:
                    raise InputError(f"{path}:{i}: expected 'word v1 v2 ...'")
                if dim is None:
                    dim = len(parts) - 1
                if len(parts) - 1 != dim:
                    raise InputError(f"{path}:{i}: {len(parts) - 1} numbers, the first line had {dim}")
                try:
                    rows.append([float(x) for x in parts[1:]])
                except ValueError:
                    raise InputError(f"{path}:{i}: not a number in the vector") from None
                words.append(parts[0])
                if limit and len(words) >= limit:
                    break
        return cls(words, np.array(rows))

    def has(self, word: str) -> bool:
        return word in self.index

    def encode(self, words: Sequence[str]) -> np.ndarray:
        missing = [w for w in words if w not in self.index]
        if missing:
            raise InputError(f"{len(missing)} word(s) not in the vocabulary, e.g. {missing[:5]}")
        return self.vectors[[self.index[w] for w in words]]

    def replace(self, updates: dict[str, np.ndarray]) -> "StaticVectors":
        """A copy with some rows replaced."""
        vectors = self.vectors.copy()
        for w, v in updates.items():
            vectors[self.index[w]] = v
        return StaticVectors(self.words, vectors)


def encode(encoder: Any, texts: Sequence[str]) -> np.ndarray:
    """Vectors (float64, one row per text) from any encoder."""
    if not len(texts):
        return np.zeros((0, 0))
    if hasattr(encoder, "encode"):
        vecs = encoder.encode(list(texts))
    elif callable(encoder):
        vecs = encoder(list(texts))
    else:
        raise ConfigError(
            f"cannot embed with a {type(encoder).__name__}: give an Embedder, StaticVectors or encode(texts)"
        )
    vecs = np.asarray(vecs, dtype=np.float64)
    if vecs.ndim != 2 or vecs.shape[0] != len(texts):
        raise ConfigError(f"the encoder returned shape {vecs.shape} for {len(texts)} texts")
    return vecs


def known_words(encoder: Any, words: Sequence[str]) -> tuple[list[str], list[str]]:
    """(kept, missing): words an encoder with a vocabulary (``has``) lacks are missing; others keep all."""
    has = getattr(encoder, "has", None)
    if has is None:
        return list(words), []
    kept = [w for w in words if has(w)]
    return kept, [w for w in words if not has(w)]
