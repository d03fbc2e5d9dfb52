"""embedlab.train.checkpoint: save -> load restores the trainable weights, the training state and every RNG;
writes are atomic; rotation keeps the newest; a damaged checkpoint is one clear line."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from embedlab.errors import EmbedlabError
from embedlab.io import MARKER
from embedlab.train.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
    trainable_state,
)


def tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Embedding(7, 4), torch.nn.Linear(4, 3))
    model[0].weight.requires_grad_(False)  # frozen: not in the checkpoint
    return model


def test_round_trip_restores_trainable_weights_and_state(tmp_path):
    model, other = tiny(0), tiny(1)
    frozen_before = other[0].weight.detach().clone()
    state = {"step": 12, "losses": [0.5, 0.25], "optimizer": {"lr": torch.tensor([1e-3, 2e-3])}}
    path = save_checkpoint(tmp_path, 12, model, state, keep=3)
    assert path == tmp_path / "step-0000012"
    assert sorted(os.listdir(path)) == sorted([MARKER, "state.pt", "trainable.safetensors"])
    assert os.listdir(tmp_path) == ["step-0000012"]  # no temporary sibling left
    loaded = load_checkpoint(path, other)
    assert loaded["step"] == 12 and loaded["losses"] == [0.5, 0.25]
    torch.testing.assert_close(loaded["optimizer"]["lr"], torch.tensor([1e-3, 2e-3]))
    for name in ("1.weight", "1.bias"):
        torch.testing.assert_close(dict(other.named_parameters())[name], dict(model.named_parameters())[name])
    torch.testing.assert_close(other[0].weight, frozen_before)  # frozen weights are not saved nor touched
    assert set(trainable_state(model)) == {"1.weight", "1.bias"}


def test_rotation_keeps_the_newest_and_listing_ignores_the_rest(tmp_path):
    model = tiny(0)
    for step in (1, 2, 10, 300, 4000):
        save_checkpoint(tmp_path, step, model, {"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000300", "step-0004000"]
    (tmp_path / "step-0009999").mkdir()  # a folder without state.pt (not a finished checkpoint)
    (tmp_path / "step-0000001.txt").write_text("a file")
    (tmp_path / "notes").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000300", "step-0004000"]
    assert list_checkpoints(tmp_path / "absent") == []


def test_rng_states_round_trip():
    states = rng_states()
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.random(), np.random.rand(5), torch.rand(5)  # move every generator on
    set_rng_states(states)
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected


def test_a_failed_write_leaves_the_older_checkpoints_and_no_partial_one(tmp_path, monkeypatch):
    model = tiny(0)
    save_checkpoint(tmp_path, 1, model, {"step": 1}, keep=1)

    def fail(obj, f, *a, **k):
        open(f, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, 2, model, {"step": 2}, keep=1)
    assert os.listdir(tmp_path) == ["step-0000001"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000001"]


def _one_line_error(path, model) -> str:
    with pytest.raises(EmbedlabError) as info:
        load_checkpoint(path, model)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    return message


@pytest.mark.parametrize(
    ("victim", "damage"),
    [
        ("trainable.safetensors", b""),
        ("trainable.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"),
        ("state.pt", None),  # truncated zip
        ("state.pt", "missing"),
        ("trainable.safetensors", "missing"),
    ],
)
def test_a_damaged_checkpoint_is_one_line(tmp_path, victim, damage):
    path = save_checkpoint(tmp_path, 3, tiny(0), {"step": 3}, keep=2)
    f = path / victim
    if damage == "missing":
        f.unlink()
    elif damage is None:
        f.write_bytes(f.read_bytes()[:40])
    else:
        f.write_bytes(damage)
    assert "delete it to resume from an older one" in _one_line_error(path, tiny(1))


def test_a_state_file_of_garbage_is_one_line(tmp_path):
    path = save_checkpoint(tmp_path, 3, tiny(0), {"step": 3}, keep=2)
    (path / "state.pt").write_bytes(b"this is not a torch checkpoint at all")
    _one_line_error(path, tiny(1))


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    path = save_checkpoint(tmp_path, 3, tiny(0), {"step": 3}, keep=2)
    other = torch.nn.Sequential(torch.nn.Linear(4, 3))
    assert "does not match this model/config (unknown weights such as 1." in _one_line_error(path, other)


@pytest.mark.parametrize(
    ("saved", "target"),
    [
        (1, 3),
        (2, 3),
    ],
)
def test_a_weight_of_another_shape_is_refused(tmp_path, saved, target):
    """Same names, other widths (e.g. another projection size in the config): refused, nothing copied."""
    source = torch.nn.Linear(4, saved)
    source.weight.requires_grad_(saved == 1)  # frozen in the broadcastable case: only the bias is saved
    path = save_checkpoint(tmp_path, 3, source, {}, keep=2)
    model = torch.nn.Linear(4, target)
    model.weight.requires_grad_(saved == 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert "does not match" in _one_line_error(path, model)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, before[name])
