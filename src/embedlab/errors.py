"""User-facing errors: one clear line, no traceback in the CLI."""
from __future__ import annotations


class EmbedlabError(Exception):
    """An error caused by the user's input or environment, with a message meant to be read as is.

    ``http_status`` is the status the server answers for it (``embedlab.serve`` reads only this
    attribute, never the message)."""

    http_status: int = 422


class ModelNotFoundError(EmbedlabError):
    """The model name is neither an alias, a directory, nor a reachable hub id."""

    http_status = 404


class ConfigError(EmbedlabError):
    """A setting, module config or saved config that is invalid."""


class PoolingError(ConfigError):
    """A pooling head that cannot apply to this backbone or configuration."""


class InputError(EmbedlabError):
    """Texts or files that cannot be encoded (empty, wrong type, undecodable)."""


class EmptyInput(InputError):
    """No inputs at all (an empty list), where at least one is needed."""

    http_status = 400


class Overloaded(EmbedlabError):
    """The server's queue is full; retry after ``retry_after`` seconds."""

    http_status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(EmbedlabError):
    """The server cannot answer now: shutting down, timed out, or its model worker is dead or stuck."""

    http_status = 503


class BackendError(EmbedlabError):
    """The model itself failed (NaN output, out of memory)."""

    http_status = 500
