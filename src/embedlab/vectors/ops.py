"""Truncation and L2 normalisation of embedding matrices: the one implementation.

Every place that cuts a vector to its Matryoshka prefix or scales it to unit length calls these:
the chain modules :class:`~embedlab.models.modules.Truncate` / :class:`~embedlab.models.modules.Normalize`
(on torch tensors), the static model, the index codecs, the serve engine, mining and the demo (on numpy).

:func:`truncate` and :func:`normalize` take a numpy array or a torch tensor (duck-typed: this module
never imports torch). On numpy they return float32; on torch they keep the dtype and device, and
:func:`normalize` is exactly ``torch.nn.functional.normalize`` (``x / max(||x||, eps)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedlab.errors import ConfigError, InputError
from embedlab.validation import positive_int

EPS = 1e-12  # zero rows stay zero (torch.nn.functional.normalize's eps)


def _is_numpy(x: Any) -> bool:
    return isinstance(x, np.ndarray) or not hasattr(x, "norm")


def check_dim(dim: Any, width: int | None = None, what: str = "dim") -> int:
    """``dim`` as a positive integer, at most ``width`` when given; a one-line ConfigError otherwise."""
    positive_int(what, int(dim) if isinstance(dim, np.integer) else dim)
    if width is not None and dim > width:
        raise ConfigError(f"{what}={dim} needs at least {dim} dimensions, the vectors have {width}")
    return int(dim)


def truncate(x: Any, dim: int | None) -> Any:
    """The first ``dim`` dimensions of each row (Matryoshka prefix); ``None`` keeps every dimension.
    Does not renormalise (see :func:`prepare`)."""
    if _is_numpy(x):
        x = np.asarray(x, dtype=np.float32)
    if dim is None:
        return x
    dim = check_dim(dim, x.shape[-1])
    return x[..., :dim]


def normalize(x: Any) -> Any:
    """Each row scaled to unit L2 norm: ``x / max(||x||_2, 1e-12)`` (rows of zeros stay zero)."""
    if _is_numpy(x):
        x = np.asarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.float32(EPS))
    return x / x.norm(p=2, dim=-1, keepdim=True).clamp_min(EPS)  # torch.nn.functional.normalize, op for op


def check_vectors(x: Any, what: str = "vectors") -> np.ndarray:
    """``x`` as a 2-d, finite float32 numpy array; a one-line InputError otherwise."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise InputError(f"expected a 2-d array of {what}, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"expected float {what}, got {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise InputError(f"{what} contain NaN or inf")
    return a


def prepare(x: Any, dim: int | None = None) -> np.ndarray:
    """What every index and quantiser stores: validated (2-d, float, finite), truncated to ``dim``,
    L2-normalised, C-contiguous float32."""
    return np.ascontiguousarray(normalize(truncate(check_vectors(x), dim)), dtype=np.float32)
