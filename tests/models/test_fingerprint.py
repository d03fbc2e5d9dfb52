"""embedlab.models.fingerprint.weights_fingerprint: the documented encoding, computed here with hashlib,
and the properties the caches rely on (same weights -> same value wherever they come from; any change of a
weight, a name or the config -> another value)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch

from embedlab.models.fingerprint import weights_fingerprint


def reference(config: dict, tensors: dict[str, np.ndarray]) -> str:
    """The module docstring's recipe, by hand: config JSON (sorted keys), then name + raw bytes in name order."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(tensors):
        h.update(name.encode() + np.ascontiguousarray(tensors[name]).tobytes())
    return h.hexdigest()[:16]


@pytest.fixture
def weights():
    rng = np.random.default_rng(0)
    return {"b.weight": rng.standard_normal((3, 4)).astype(np.float32), "a.bias": np.arange(5, dtype=np.float32)}


CONFIG = {"hidden_size": 4, "layers": 2, "pooling": "mean"}


def test_matches_the_documented_encoding(weights):
    fp = weights_fingerprint(CONFIG, weights)
    assert fp == reference(CONFIG, weights) and len(fp) == 16 and int(fp, 16) >= 0
    assert weights_fingerprint({}, {}) == hashlib.sha256(b"{}").hexdigest()[:16]


def test_numpy_and_torch_and_insertion_order_agree(weights):
    as_torch = {k: torch.from_numpy(v.copy()) for k, v in reversed(list(weights.items()))}
    assert weights_fingerprint(CONFIG, as_torch) == weights_fingerprint(CONFIG, weights)
    # the config may come as its sorted JSON already
    assert weights_fingerprint(json.dumps(CONFIG, sort_keys=True), weights) == weights_fingerprint(CONFIG, weights)
    assert weights_fingerprint(dict(reversed(list(CONFIG.items()))), weights) == weights_fingerprint(CONFIG, weights)


def test_a_non_contiguous_tensor_hashes_as_its_values_in_row_major_order():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    view = base.t()  # not contiguous
    assert weights_fingerprint({}, {"w": view}) == weights_fingerprint({}, {"w": view.contiguous()})
    assert weights_fingerprint({}, {"w": view}) == reference({}, {"w": base.numpy().T})
    assert weights_fingerprint({}, {"w": view}) != weights_fingerprint({}, {"w": base})


@pytest.mark.parametrize("where", [(0, 0), (2, 3), (1, 2)])
def test_one_changed_value_changes_it(weights, where):
    before = weights_fingerprint(CONFIG, weights)
    changed = {k: v.copy() for k, v in weights.items()}
    changed["b.weight"][where] = np.nextafter(changed["b.weight"][where], np.float32(np.inf))  # one ulp
    assert weights_fingerprint(CONFIG, changed) != before
    assert weights_fingerprint(CONFIG, weights) == before  # the input was not touched


def test_names_dtype_and_config_count(weights):
    before = weights_fingerprint(CONFIG, weights)
    renamed = {("c.weight" if k == "b.weight" else k): v for k, v in weights.items()}
    swapped = {"b.weight": weights["a.bias"], "a.bias": weights["b.weight"]}
    assert weights_fingerprint(CONFIG, renamed) != before
    assert weights_fingerprint(CONFIG, swapped) != before
    assert weights_fingerprint(CONFIG, {k: v.astype(np.float64) for k, v in weights.items()}) != before
    assert weights_fingerprint(dict(CONFIG, layers=3), weights) != before
    assert weights_fingerprint(CONFIG, {"b.weight": weights["b.weight"]}) != before  # a dropped tensor


def test_bf16_is_hashed_as_its_own_bytes_not_converted():
    x = torch.tensor([1.0, 1.00390625, -2.5], dtype=torch.bfloat16)  # exact in bf16
    raw = x.view(torch.int16).numpy().tobytes()
    expected = hashlib.sha256(b"{}" + b"w" + raw).hexdigest()[:16]
    assert weights_fingerprint({}, {"w": x}) == expected
    assert weights_fingerprint({}, {"w": x}) != weights_fingerprint({}, {"w": x.float()})


def test_same_weights_from_another_folder_with_other_mtimes(tiny_bert, tmp_path):
    from embedlab.models import Embedder

    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(tiny_bert, copy)
    for f in copy.iterdir():
        os.utime(f, (1_000_000, 1_000_000))  # 1970: another mtime on every file
    first = Embedder.from_pretrained(tiny_bert, pooling="mean").fingerprint()
    assert Embedder.from_pretrained(copy, pooling="mean").fingerprint() == first
    assert Embedder.from_pretrained(copy, pooling="cls").fingerprint() != first  # the config counts
