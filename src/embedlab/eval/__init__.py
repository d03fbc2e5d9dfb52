"""Evaluation: task registry over the shared data, six MTEB-style task types, per-example scores,
an embedding cache, significance tests and comparison reports (see docs/evaluation.md)."""
