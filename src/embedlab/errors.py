"""User-facing errors: one clear line, no traceback in the CLI."""
from __future__ import annotations


class EmbedlabError(Exception):
    """An error caused by the user's input or environment, with a message meant to be read as is."""


class ModelNotFoundError(EmbedlabError):
    """The model name is neither an alias, a directory, nor a reachable hub id."""


class PoolingError(EmbedlabError):
    """A pooling head that cannot apply to this backbone or configuration."""


class InputError(EmbedlabError):
    """Texts or files that cannot be encoded (empty, wrong type, undecodable)."""
