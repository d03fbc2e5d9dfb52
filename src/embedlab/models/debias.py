"""Hard debiasing of a sentence embedder as a chain module (Bolukbasi et al. 2016, for sentence vectors).

:class:`DebiasProjection` is the fixed linear map ``P = I − Bᵀ B`` that removes a bias subspace
(orthonormal basis ``B``, k × d) from ``sentence_embedding``: Bolukbasi's *neutralise* step applied
to every text. Equalise is a per-word operation on static vectors and has no linear counterpart;
see :mod:`embedlab.analysis.bias`.

It is saved as sentence-transformers' ``Dense`` (identity activation, no bias, weight ``P``), so a
debiased chain ``Transformer → Pooling → Dense → Normalize`` loads in ``SentenceTransformer(path)``
and gives the projected vectors. The basis and where it came from are kept beside it in
``debias.json`` (sentence-transformers ignores the file). Loading the saved *model* through
``Embedder.from_pretrained`` reads the folder by its modules.json type, i.e. as a plain
:class:`~embedlab.models.modules.Projection` with the same weights (same vectors);
``DebiasProjection.load(folder)`` restores the debias module itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from embedlab.errors import ConfigError
from embedlab.io import atomic_path, read_json
from embedlab.models.modules import CONFIG_NAME, WEIGHTS_NAME, Module, Normalize, Projection, load_weights, register

DEBIAS_FILE = "debias.json"


@register
class DebiasProjection(Projection):
    """``sentence_embedding ← (I − Bᵀ B) · sentence_embedding`` for an orthonormal basis ``B`` (k × d).

    The weight is fixed (``requires_grad=False``). Follow it with :class:`Normalize` to renormalise."""

    kind = "debias"
    folder_name = "Dense"

    def __init__(self, basis: Sequence[Sequence[float]] | np.ndarray, info: dict[str, Any] | None = None) -> None:
        try:
            B = np.asarray(basis, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError("debias: 'basis' must be a k x d matrix of numbers") from None
        if B.ndim != 2 or B.shape[0] < 1 or B.shape[1] < 2 or not np.isfinite(B).all():
            raise ConfigError(f"debias: 'basis' must be a finite k x d matrix with k >= 1, d >= 2; got shape {B.shape}")
        k, d = B.shape
        if k >= d:
            raise ConfigError(f"debias: a {k}-dimensional subspace would remove all of a {d}-d space")
        if not np.allclose(B @ B.T, np.eye(k), atol=1e-5):
            raise ConfigError("debias: the basis rows must be orthonormal")
        super().__init__(d, d, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(np.eye(d) - B.T @ B, dtype=torch.float32))
        self.linear.weight.requires_grad_(False)
        self.register_buffer("basis", torch.as_tensor(B, dtype=torch.float64), persistent=False)
        self.info = dict(info or {})

    def save(self, path: str | Path) -> None:
        """The Dense files (config.json, model.safetensors with ``linear.weight``) plus ``debias.json``."""
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            (tmp / CONFIG_NAME).write_text(json.dumps(self.saved_config(), indent=2) + "\n")
            save_file({"linear.weight": self.linear.weight.detach().contiguous().cpu()}, str(tmp / WEIGHTS_NAME))
            side = {"kind": self.kind, "basis": self.basis.tolist(), "info": self.info}
            (tmp / DEBIAS_FILE).write_text(json.dumps(side, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "DebiasProjection":
        path = Path(path)
        side = read_json(path / DEBIAS_FILE, ConfigError, "debias module")
        if not isinstance(side, dict) or "basis" not in side:
            raise ConfigError(f"{path / DEBIAS_FILE}: expected an object with 'basis'")
        module = cls(side["basis"], side.get("info"))
        weight = load_weights(path / WEIGHTS_NAME, cls.kind).get("linear.weight")
        if (
            weight is None
            or weight.shape != module.linear.weight.shape
            or not torch.allclose(weight.float(), module.linear.weight, atol=1e-5)
        ):
            raise ConfigError(f"{path}: the saved weight is not the projection of the saved basis")
        with torch.no_grad():
            module.linear.weight.copy_(weight)  # bit-identical outputs after a round trip
        return module


def debias_embedder(
    embedder: Any, basis: np.ndarray, *, renormalize: bool = True, info: dict[str, Any] | None = None
) -> Any:
    """A new embedder (sharing ``embedder``'s modules) with a :class:`DebiasProjection` of ``basis``.

    The basis lives in the embedder's output space. With ``renormalize`` the projection goes just
    before the final :class:`Normalize` (one is appended if there is none), so outputs stay unit
    vectors; without it, it goes last. Projection and scaling commute up to length, so a basis
    estimated from normalised outputs is right either way."""
    basis = np.asarray(basis, dtype=np.float64)
    if basis.ndim != 2 or basis.shape[1] != embedder.output_dim:
        raise ConfigError(
            f"debias: the basis is {basis.shape[-1] if basis.ndim else '?'}-d, the model outputs "
            f"{embedder.output_dim}-d vectors"
        )
    module = DebiasProjection(basis, info)
    modules: list[Module] = list(embedder.chain)
    if renormalize:
        if isinstance(modules[-1], Normalize):
            modules.insert(len(modules) - 1, module)
        else:
            modules += [module, Normalize()]
    else:
        modules.append(module)
    return embedder.with_modules(modules)


__all__ = ["DEBIAS_FILE", "DebiasProjection", "debias_embedder"]
