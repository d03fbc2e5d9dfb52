"""User-facing errors: one hierarchy, one clear line, no traceback in the CLI.

Every class carries two codes, read by the two front ends and by nothing else:

- ``exit_code``: what ``embedlab`` exits with. 2 for usage and configuration errors (a flag, a value, a
  name or an output path that cannot be used; typer's and click's convention), 1 for runtime failures
  (unreadable data, a model that fails, a target that cannot be reached).
- ``http_status``: what the server answers (``embedlab.serve`` reads only this attribute, never the message).

The tree::

    EmbedlabError (1, 422)
    ├── ConfigError (2)                 a setting, flag value or saved config that is invalid
    │   ├── UsageError (2)              a command line that cannot run as given (conflicting or missing flags)
    │   ├── OutputPathError (2)         an output path that cannot be written, or would replace the user's files
    │   ├── PoolingError (2)            a pooling head that cannot apply to this backbone
    │   └── CodecError (2)              a codec string that does not parse or does not fit the vectors
    ├── ModelNotFoundError (1, 404)     a model name that is no alias, directory or reachable hub id
    ├── InputError (1)                  texts or files that cannot be used
    │   ├── EmptyInput (1, 400)
    │   ├── DatasetError (1)            a dataset file missing or corrupt
    │   ├── InputTooLong (1, 413)       server: an input over the limit with truncation off
    │   ├── TooManyInputs (1, 400)      server: too many inputs in one request
    │   └── BadRequest (1, 400)         server: a request-level check failed
    ├── IndexStoreError (1)             an index directory or operation that fails
    ├── ShardError (1)                  a shard directory missing, incomplete, corrupt or of another model
    ├── ExportError (1)                 a vector database that cannot be reached, opened or written
    ├── TrainingDiverged (1)            NaN/inf loss or gradient
    ├── BackendError (1, 500)           the model itself failed
    ├── Overloaded (1, 429), Unavailable (1, 503)
    └── Unauthorized (1, 401), NotFound (1, 404), ClientGone (1, 499)

The feature modules re-export the classes that used to live in them (``embedlab.index.codecs.CodecError``
and so on), so old import paths keep working.
"""

from __future__ import annotations


class EmbedlabError(Exception):
    """An error caused by the user's input or environment, with a message meant to be read as is."""

    exit_code: int = 1
    http_status: int = 422


class ConfigError(EmbedlabError):
    """A setting, flag value, module config or saved config that is invalid."""

    exit_code = 2


class UsageError(ConfigError):
    """A command line that cannot run as given: flags that conflict, or one that is needed and missing."""


class OutputPathError(ConfigError):
    """An output path that cannot be used: unwritable, under a regular file, the current folder, or a
    folder holding files that a write without ``--overwrite`` would replace."""


class PoolingError(ConfigError):
    """A pooling head that cannot apply to this backbone or configuration."""


class CodecError(ConfigError):
    """A codec string that does not parse or does not fit the vectors."""


class ModelNotFoundError(EmbedlabError):
    """The model name is neither an alias, a directory, nor a reachable hub id."""

    http_status = 404


class InputError(EmbedlabError):
    """Texts or files that cannot be encoded (empty, wrong type, undecodable)."""


class EmptyInput(InputError):
    """No inputs at all (an empty list), where at least one is needed."""

    http_status = 400


class DatasetError(InputError):
    """A dataset file is missing or corrupt."""


class InputTooLong(InputError):
    """An input over ``--max-input-tokens`` while truncation is off, or a request larger than the queue."""

    http_status = 413


class TooManyInputs(InputError):
    """More inputs in one request than the server accepts (2,048)."""

    http_status = 400


class BadRequest(InputError):
    """A request-level check failed (e.g. ``dimensions`` out of range, JSON that does not parse)."""

    http_status = 400

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class IndexStoreError(EmbedlabError):
    """A problem with an index directory or an index operation."""


class ShardError(EmbedlabError):
    """A shard directory that is missing, incomplete, corrupt or made by another model."""


class ExportError(EmbedlabError):
    """A target that cannot be reached, opened or written."""


class TrainingDiverged(EmbedlabError):
    """The loss or the gradient became NaN/inf; the last good checkpoint is kept."""


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


class Unauthorized(EmbedlabError):
    """A missing or wrong API key."""

    http_status = 401


class NotFound(EmbedlabError):
    """An unknown index (or route)."""

    http_status = 404


class ClientGone(EmbedlabError):
    """The client disconnected before its answer was ready (nobody reads this response)."""

    http_status = 499


def exit_code_of(exc: BaseException) -> int:
    """The exit code for an exception: its class's ``exit_code`` (1 when it has none that is valid)."""
    code = getattr(exc, "exit_code", None)
    return code if isinstance(code, int) and 1 <= code <= 125 else 1


__all__ = [
    "BackendError",
    "BadRequest",
    "ClientGone",
    "CodecError",
    "ConfigError",
    "DatasetError",
    "EmbedlabError",
    "EmptyInput",
    "ExportError",
    "IndexStoreError",
    "InputError",
    "InputTooLong",
    "ModelNotFoundError",
    "NotFound",
    "OutputPathError",
    "Overloaded",
    "PoolingError",
    "ShardError",
    "TooManyInputs",
    "TrainingDiverged",
    "Unauthorized",
    "Unavailable",
    "UsageError",
    "exit_code_of",
]
