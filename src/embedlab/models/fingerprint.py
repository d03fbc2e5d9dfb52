"""The one weight fingerprint: what identifies a model in every cache key (:func:`embedlab.io.cache_key`).

SHA-256 over a JSON config (what defines the model apart from weights; never where it was loaded from)
and every tensor's name and raw bytes in name order, as 16 hex digits. The same weights loaded from
another path give the same fingerprint; changing any single weight changes it.
:meth:`Embedder.fingerprint` and the GoalEx causal LM (:mod:`embedlab.analysis.goalex_llm`) use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np


def _raw_bytes(tensor: Any) -> bytes:
    if hasattr(tensor, "detach"):  # a torch tensor (bf16 too: viewed as bytes, not converted)
        import torch

        return tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
    return np.ascontiguousarray(tensor).view(np.uint8).tobytes()


def weights_fingerprint(config: Mapping[str, Any] | str, tensors: Mapping[str, Any]) -> str:
    """Fingerprint of ``config`` (a dict, or its ``json.dumps(..., sort_keys=True)``) and ``tensors``
    (name -> torch tensor or numpy array)."""
    h = hashlib.sha256()
    h.update((config if isinstance(config, str) else json.dumps(config, sort_keys=True)).encode())
    for name, tensor in sorted(tensors.items()):
        h.update(name.encode())
        h.update(_raw_bytes(tensor))
    return h.hexdigest()[:16]


__all__ = ["weights_fingerprint"]
