"""A design of the headline paper's grid: a pooling head under an attention mode, named ``pooling/attention``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from embedlab.errors import ConfigError
from embedlab.validation import format_validation_error

Attention = Literal["causal", "bidirectional"]


class Design(BaseModel):
    """``Design.parse("multi_layer/bidirectional")`` and ``str(design)`` are exact inverses; result
    folders, report rows and cache keys all use ``str(design)`` (or :attr:`dir_name` on disk)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pooling: str
    attention: Attention

    @field_validator("pooling")
    @classmethod
    def _known(cls, v: str) -> str:
        from embedlab.models.pooling import POOLING_HEADS

        if v not in POOLING_HEADS:
            raise ValueError(f"unknown pooling {v!r}; choose from {', '.join(POOLING_HEADS)}")
        return v

    @classmethod
    def parse(cls, text: "str | Design") -> "Design":
        if isinstance(text, Design):
            return text
        pooling, sep, attention = str(text).partition("/")
        if not sep or attention not in ("causal", "bidirectional"):
            raise ConfigError(f"design {text!r} is not 'pooling/attention' with attention causal or bidirectional")
        try:
            return cls(pooling=pooling, attention=attention)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"design {text!r}")) from None

    def __str__(self) -> str:
        return f"{self.pooling}/{self.attention}"

    @property
    def dir_name(self) -> str:
        return f"{self.pooling}-{self.attention}"

    @property
    def trainable_head(self) -> bool:
        from embedlab.models.pooling import POOLING_HEADS

        return POOLING_HEADS[self.pooling].trainable

    @property
    def paper_model(self) -> int | None:
        """The headline paper's model number (Tang & Yang 2024, Table 1), if this is one of its five designs."""
        return next((n for n, d in PAPER_MODELS.items() if d == self), None)

    @property
    def label(self) -> str:
        return f"{self} (Model {self.paper_model})" if self.paper_model else str(self)


PAPER_MODELS: dict[int, Design] = {
    1: Design(pooling="last_token", attention="causal"),  # EOS-last token
    2: Design(pooling="last_layer", attention="causal"),  # last-layer trainable pooling (over the EOS state)
    3: Design(pooling="multi_layer", attention="causal"),  # multi-layers trainable pooling (EOS per layer)
    4: Design(pooling="last_layer", attention="bidirectional"),  # last-layer trainable pooling (all tokens)
    5: Design(pooling="multi_layer", attention="bidirectional"),  # multi-layers trainable pooling (mean per layer)
}
