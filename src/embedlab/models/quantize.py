"""Reduced-precision inference: int8 dynamic quantisation of the source's linear layers.

Weights are quantised once to int8 per output channel; activations per batch (dynamic range), so no
calibration data is needed (Jacob et al. 2018, "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference"; PyTorch's dynamic quantisation, fbgemm/x86 kernels).
Only the backbone's ``nn.Linear`` layers are quantised; embeddings, LayerNorm, attention scores and
the chain's modules after the source stay fp32, and the returned vectors are fp32.

PyTorch marks ``torch.ao.quantization`` deprecated in favour of torchao, whose int8 path needs
``torch.compile`` to be fast on CPU; the eager dynamic quantisation is still shipped and is what runs
here (its deprecation warnings are silenced only around the call). Measured speed and quality against
fp32 are in docs/encode_throughput.md: on an AVX2 CPU without VNNI the int8 kernels gain little, and
per-batch activation ranges cost accuracy on models with outlier features (MiniLM).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

from embedlab.errors import ConfigError


def quantize_int8(embedder: Any) -> Any:
    """A new embedder over a copy of ``embedder``'s backbone whose ``nn.Linear`` layers are int8
    (dynamic quantisation, per-channel weights); the original is untouched. CPU only."""
    source = embedder.source
    if not hasattr(source, "model") or not hasattr(source, "with_options"):
        raise ConfigError(f"int8 needs a transformer backbone; this model's source is {type(source).__name__}")
    if embedder.device.type != "cpu":
        raise ConfigError(f"int8 runs on CPU only (PyTorch's dynamic quantisation); the model is on {embedder.device}")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if getattr(source, "is_decoder", False):
        warnings.warn(
            "int8 on a decoder backbone loses much of its accuracy (smollm2-135m: min cosine 0.53 vs fp32 in "
            "docs/encode_throughput.md); check your task's scores before you ship it",
            UserWarning,
            stacklevel=2,
        )

    model = copy.deepcopy(source.model).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize_per_(tensor|channel).*")
        quantized = quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    new_source = type(source)(quantized, source.tokenizer, source=source.source, **source.get_config())
    out = embedder.with_source(new_source)
    return out.eval()


def count_quantized(model: nn.Module) -> int:
    """How many dynamically quantised linear layers ``model`` holds."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return sum(isinstance(m, DynamicLinear) for m in model.modules())
