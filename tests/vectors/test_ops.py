"""embedlab.vectors.ops against hand-computed values, and the torch path against torch's own normalize."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedlab.errors import ConfigError, InputError
from embedlab.vectors import normalize, prepare, truncate


def test_normalize_hand_computed():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]], dtype=np.float64)
    out = normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], dtype=np.float32))


def test_truncate_hand_computed_and_checked():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(truncate(x, 2), [[0, 1], [4, 5], [8, 9]])
    assert truncate(x, None) is x
    with pytest.raises(ConfigError, match="at least 5 dimensions"):
        truncate(x, 5)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match="positive integer"):
            truncate(x, bad)


def test_prepare_truncates_then_renormalises():
    x = np.array([[3.0, 4.0, 100.0], [1.0, 0.0, -5.0]])
    np.testing.assert_allclose(prepare(x, 2), [[0.6, 0.8], [1.0, 0.0]], rtol=0, atol=1e-7)
    out = prepare(x)
    assert out.flags.c_contiguous and out.dtype == np.float32
    np.testing.assert_allclose(out[1], np.array([1, 0, -5]) / np.sqrt(26), rtol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(3), "2-d"),
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([[1.0, np.inf]]), "NaN"),
        (np.ones((2, 2), dtype=int), "float"),
    ],
)
def test_prepare_rejects_bad_arrays(bad, message):
    with pytest.raises(InputError, match=message):
        prepare(bad)


def test_torch_path_is_torch_normalize_and_slicing():
    torch.manual_seed(0)
    x = torch.randn(5, 16, dtype=torch.float64, requires_grad=True)
    x0 = torch.zeros(1, 16, dtype=torch.float64)
    out = normalize(torch.cat([x, x0]))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.nn.functional.normalize(torch.cat([x, x0]), dim=-1), rtol=0, atol=0)
    out.sum().backward()  # differentiable, zero row included, no NaN
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(truncate(x, 4), x[:, :4], rtol=0, atol=0)
