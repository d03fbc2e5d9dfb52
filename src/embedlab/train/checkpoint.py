"""Training checkpoints: the trainable weights, optimizer, schedule, sampler position and every RNG,
written atomically, so that a resumed run continues exactly where the killed one stopped."""

from __future__ import annotations

import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from embedlab.errors import EmbedlabError
from embedlab.io import atomic_path

PREFIX = "step-"


def rng_states() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, state: dict[str, Any], keep: int) -> Path:
    """``root/step-NNNNNN/`` with ``trainable.safetensors`` and ``state.pt``; keeps the newest ``keep``."""
    path = root / f"{PREFIX}{step:07d}"
    with atomic_path(path) as tmp:
        tmp.mkdir(parents=True)
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(state, tmp / "state.pt")
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def list_checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.pt").is_file())


def load_checkpoint(path: Path, model: torch.nn.Module) -> dict[str, Any]:
    """Load the trainable weights into ``model``; return the saved training state.

    A damaged checkpoint (a missing, truncated or corrupt file) or one of another model (unknown weights,
    or weights of another shape) is a one-line :class:`EmbedlabError` naming ``path``; nothing is copied then."""
    try:
        weights = load_file(str(path / "trainable.safetensors"))
        state = torch.load(path / "state.pt", weights_only=False)
    except (
        OSError,
        RuntimeError,
        EOFError,
        SafetensorError,
        pickle.UnpicklingError,
        ValueError,
        KeyError,
        AttributeError,
        ImportError,
    ) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EmbedlabError(
            f"checkpoint {path} is unreadable ({reason}); delete it to resume from an older one"
        ) from None
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise EmbedlabError(
            f"checkpoint {path} does not match this model/config (unknown weights such as {missing[0]})"
        )
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise EmbedlabError(
                f"checkpoint {path} does not match this model/config (weight {name} has shape "
                f"{tuple(tensor.shape)}, the model's is {tuple(params[name].shape)})"
            )
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    return state
