"""The README's first job: nearest neighbours over a small shipped corpus."""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np

from embedlab.vectors import normalize


def _lines(name: str) -> list[str]:
    text = resources.files("embedlab.data").joinpath(name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def nearest_neighbours(embedder: Any, top_k: int = 3) -> list[tuple[str, list[tuple[str, float]]]]:
    """For each sample query, the ``top_k`` most similar corpus sentences by cosine."""
    corpus, queries = _lines("demo_corpus.txt"), _lines("demo_queries.txt")
    docs = embedder.encode(corpus, prompt_name="document" if "document" in embedder.prompts else None)
    qs = embedder.encode(queries, prompt_name="query" if "query" in embedder.prompts else None)
    docs, qs = normalize(docs), normalize(qs)
    scores = qs @ docs.T
    results = []
    for q, row in zip(queries, scores):
        best = np.argsort(-row)[:top_k]
        results.append((q, [(corpus[i], float(row[i])) for i in best]))
    return results
