"""Training configuration, validated by pydantic: a typo is an error that names the field."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from embedlab.errors import EmbedlabError


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "minilm-l6"
    pooling: str | None = None
    attention: str | None = None
    data: str = Field(description="a JSONL/TSV file of (query, positive) pairs, or a named adapter: stsb-pairs")
    output: str
    steps: int = Field(default=100, gt=0)
    batch_size: int = Field(default=32, gt=1)
    lr: float = Field(default=2e-5, gt=0)
    warmup_steps: int = Field(default=10, ge=0)
    temperature: float = Field(default=0.05, gt=0)  # scale 20
    seed: int = 42
    max_length: int | None = Field(default=None, gt=0)
    hard_negatives: int = Field(default=0, ge=0)  # k negatives per query, from the data's "negatives" (embedlab mine)
    in_batch_negatives: bool = True  # False: only each query's own positive and negatives (NV-Embed stage 2)
    symmetric: bool = False  # add the positives -> queries term
    mask_false_negatives: bool = True  # ignore candidates whose text equals the query's positive
    matryoshka_dims: list[int] | None = None  # e.g. [384, 256, 128, 64]: Σ InfoNCE over truncated prefixes
    matryoshka_weights: list[float] | None = None
    log_every: int = Field(default=10, gt=0)

    @field_validator("matryoshka_dims")
    @classmethod
    def _dims(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if not v or any(d <= 0 for d in v):
                raise ValueError("matryoshka_dims must be positive integers")
            v = sorted(set(v), reverse=True)
        return v


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise EmbedlabError(f"config file not found: {path}")
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise EmbedlabError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise EmbedlabError(f"{path}: the config must be a mapping")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"field '{'.'.join(str(x) for x in e['loc']) or 'config'}': {e['msg']}" for e in exc.errors())
        raise EmbedlabError(f"{path}: {problems}") from None
