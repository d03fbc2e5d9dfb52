"""Training configuration, validated by pydantic: a typo is an error that names the field.

A config is one stage (``data`` + the stage settings at the top level) or several (``stages``: each
entry overrides the top-level settings for that stage; NV-Embed's two-stage recipe is two entries).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from embedlab.errors import ConfigError, EmbedlabError
from embedlab.train.data import DEFAULT_TEMPLATE, DataSpec, check_template
from embedlab.validation import format_validation_error, int_range, positive_int

DataField = str | DataSpec | list[str | DataSpec]


class LoraSettings(BaseModel):
    """LoRA on the backbone (peft); the pooling head is always trained in full."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=16, gt=0)
    alpha: float = Field(default=32, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class _StageFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int | None = Field(default=None, gt=0)
    lr: float | None = Field(default=None, gt=0)
    warmup_steps: int | None = Field(default=None, ge=0)
    weight_decay: float | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, gt=0)
    hard_negatives: int | None = Field(default=None, ge=0)  # up to k negatives per query from the data
    in_batch_negatives: bool | None = None  # False: own positive and negatives only (NV-Embed stage 2)
    symmetric: bool | None = None  # add the positives -> queries term
    mask_false_negatives: bool | None = None  # ignore candidates equal to the query's positive
    matryoshka_dims: list[int] | None = None
    matryoshka_weights: list[float] | None = None
    similarity: Literal["cosine", "dot"] | None = None  # dot: SPLADE's score (no normalisation)
    flops_query_weight: float | None = Field(default=None, ge=0)  # λ_q of the FLOPS regulariser (sparse heads)
    flops_document_weight: float | None = Field(default=None, ge=0)  # λ_d
    flops_warmup_ratio: float | None = Field(default=None, ge=0, le=1)  # quadratic warm-up of λ over this share

    @field_validator("matryoshka_dims")
    @classmethod
    def _dims(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if not v:
                raise ValueError("matryoshka_dims must list at least one width")
            for i, d in enumerate(v):
                _checked(positive_int, f"matryoshka_dims[{i}]", d)
            v = sorted(set(v), reverse=True)
        return v


class StageConfig(_StageFields):
    name: str | None = None
    data: DataField


@dataclass(frozen=True)
class Stage:
    """A stage with every setting resolved."""

    name: str
    data: list[DataSpec]
    steps: int
    lr: float
    warmup_steps: int
    weight_decay: float
    temperature: float
    hard_negatives: int
    in_batch_negatives: bool
    symmetric: bool
    mask_false_negatives: bool
    matryoshka_dims: list[int] | None
    matryoshka_weights: list[float] | None
    similarity: str
    flops_query_weight: float
    flops_document_weight: float
    flops_warmup_ratio: float


STAGE_DEFAULTS: dict[str, Any] = {
    "steps": 100,
    "lr": 2e-5,
    "warmup_steps": 10,
    "weight_decay": 0.01,
    "temperature": 0.05,
    "hard_negatives": 0,
    "in_batch_negatives": True,
    "symmetric": False,
    "mask_false_negatives": True,
    "matryoshka_dims": None,
    "matryoshka_weights": None,
    "similarity": "cosine",
    "flops_query_weight": 0.0,
    "flops_document_weight": 0.0,
    "flops_warmup_ratio": 1 / 3,
}
# A sparse head's defaults (SPLADE): the dot product at scale 1 (sentence-transformers'
# SparseMultipleNegativesRankingLoss) and the FLOPS weights of sentence-transformers' SpladeLoss example
# (λ_q 5e-5, λ_d 3e-5), warmed up quadratically over the first third of the steps (its callback's default).
SPARSE_STAGE_DEFAULTS: dict[str, Any] = {
    "similarity": "dot",
    "temperature": 1.0,
    "flops_query_weight": 5e-5,
    "flops_document_weight": 3e-5,
}


def _data_list(data: DataField) -> list[DataSpec]:
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ValueError("data must name at least one dataset")
    return [DataSpec(source=d) if isinstance(d, str) else d for d in items]


class TrainConfig(_StageFields):
    model: str = "minilm-l6"
    pooling: str | None = None
    pooling_options: dict[str, Any] | None = None
    head_preset: Literal["small", "paper"] | None = None
    attention: Literal["causal", "bidirectional"] | None = None
    append_eos: bool | None = None
    padding_side: Literal["left", "right"] | None = None
    output: str
    data: DataField | None = None
    stages: list[StageConfig] | None = None
    instruction_template: str = DEFAULT_TEMPLATE
    lora: LoraSettings | None = None  # None: full fine-tuning
    precision: Literal["auto", "fp32", "bf16"] = "fp32"  # bf16: autocast of the forward passes; auto: bf16 where native
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    batch_size: int = 32  # queries per contrastive batch (across all processes): at least 2 (in-batch negatives)
    micro_batch_size: int | None = None  # GradCache chunk; None: no GradCache
    grad_accumulation: int = 1  # contrastive batches per optimizer step
    seed: int = 42
    max_length: int | None = Field(default=None, gt=0)
    checkpoint_every: int | None = Field(default=None, gt=0)
    keep_checkpoints: int = Field(default=2, gt=0)
    log_every: int = Field(default=10, gt=0)
    memory_limit_gb: float | None = Field(default=None, gt=0)  # for the up-front memory check; None: detect

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, v: int) -> int:
        return _checked(int_range, "batch_size", v, 2)

    @field_validator("micro_batch_size", "grad_accumulation")
    @classmethod
    def _positive(cls, v: int | None, info: ValidationInfo) -> int | None:
        return v if v is None else _checked(positive_int, str(info.field_name), v)

    @field_validator("instruction_template")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            return check_template(v)
        except EmbedlabError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _data_or_stages(self) -> "TrainConfig":
        if (self.data is None) == (self.stages is None):
            raise ValueError("give either data (one stage) or stages (a list), not both and not neither")
        if self.stages is not None and not self.stages:
            raise ValueError("stages must list at least one stage")
        if self.micro_batch_size is not None and self.micro_batch_size > self.batch_size:
            raise ValueError(
                f"micro_batch_size ({self.micro_batch_size}) must not exceed batch_size ({self.batch_size})"
            )
        for stage in self.resolved_stages():
            if stage.matryoshka_weights is not None and len(stage.matryoshka_weights) != len(
                stage.matryoshka_dims or []
            ):
                raise ValueError(
                    f"stage {stage.name}: matryoshka_weights must have one weight per matryoshka_dims entry"
                )
        return self

    def resolved_stages(self, sparse: bool = False) -> list[Stage]:
        """Every stage with its settings resolved: the stage's, else the config's, else the defaults
        (a sparse head's, :data:`SPARSE_STAGE_DEFAULTS`, over :data:`STAGE_DEFAULTS` when ``sparse``)."""
        defaults = {**STAGE_DEFAULTS, **(SPARSE_STAGE_DEFAULTS if sparse else {})}
        base = {k: getattr(self, k) for k in STAGE_DEFAULTS}
        entries = self.stages if self.stages is not None else [StageConfig(data=self.data)]  # type: ignore[arg-type]
        out = []
        for i, st in enumerate(entries):
            values = {k: (getattr(st, k) if getattr(st, k) is not None else base[k]) for k in STAGE_DEFAULTS}
            values = {k: (defaults[k] if v is None else v) for k, v in values.items()}
            out.append(Stage(name=st.name or f"stage{i + 1}", data=_data_list(st.data), **values))
        return out

    def torch_device(self) -> Any:
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise EmbedlabError("device: cuda was asked for, but no CUDA device is available")
        return torch.device(self.device)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.resolved_stages())


def _checked(check: Callable[..., Any], name: str, value: Any, *args: Any) -> Any:
    """An :mod:`embedlab.validation` check inside a pydantic validator (which needs a ValueError)."""
    try:
        return check(name, value, *args)
    except EmbedlabError as exc:
        raise ValueError(str(exc)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EmbedlabError(f"config file not found: {path}")
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping")
    return raw


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    raw = read_yaml(path)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
