"""A model's shape without its weights: the config (offline where possible) and a meta-device backbone,
for counting parameters before anything is downloaded or trained."""

from __future__ import annotations

from typing import Any

from embedlab.errors import ModelNotFoundError

# Configs of the headline paper's base models, for counting offline. transformers' default MistralConfig is
# Mistral-7B-v0.1 (hidden 4096, 32 layers, 32 heads / 8 KV heads, MLP 14336, vocabulary 32000).
KNOWN_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "mistralai/Mistral-7B-v0.1": ("mistral", {}),
    "Qwen/Qwen2-0.5B": (
        "qwen2",
        {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "max_position_embeddings": 131072,
            "tie_word_embeddings": True,
        },
    ),
}


def model_config(name: str) -> tuple[Any, str]:
    """(config, where it came from): an alias, a directory, the local HF cache, then the built-in table."""
    from transformers import CONFIG_MAPPING, AutoConfig

    from embedlab.models.backbone import resolve_source

    target, source = resolve_source(name)
    try:
        return AutoConfig.from_pretrained(target, local_files_only=True), source
    except (OSError, ValueError):
        pass
    if name in KNOWN_CONFIGS:
        model_type, fields = KNOWN_CONFIGS[name]
        return CONFIG_MAPPING[model_type](**fields), f"{name} (built-in config: no download needed to count)"
    raise ModelNotFoundError(
        f"no config for {name!r} offline: not an alias, directory or cached hub model, and not "
        f"one of the built-in configs ({', '.join(KNOWN_CONFIGS)})"
    )


def backbone_on_meta(name: str) -> tuple[Any, str]:
    """The base model (no LM head) built on the meta device: shapes and counts, no memory."""
    import torch
    from transformers import AutoModel

    config, source = model_config(name)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return model, source


def lora_parameter_count(model: Any, r: int, target_modules: str | list[str]) -> int:
    """Parameters LoRA adds: r·(in + out) for each targeted linear layer (peft's ``all-linear`` targets
    every nn.Linear of a base model; a list matches module-name suffixes, as peft does)."""
    from torch import nn

    total = 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if target_modules != "all-linear":
            targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
            if not any(name == t or name.endswith("." + t) for t in targets):
                continue
        total += r * (module.in_features + module.out_features)
    return total
