"""Errors of the server, and the one mapping from any error to an OpenAI-style body.

Every error class carries ``http_status`` (:mod:`embedlab.errors` holds the one hierarchy, the HTTP-only
classes included; they are re-exported here). :func:`error_body` and :func:`status_of` are the
only places that turn an exception into a response: no handler catches and re-words errors itself.
"""

from __future__ import annotations

from typing import Any

from embedlab.errors import (
    BackendError,
    BadRequest,
    EmbedlabError,
    EmptyInput,
    InputError,
    InputTooLong,
    NotFound,
    Overloaded,
    TooManyInputs,
    Unauthorized,
    Unavailable,
)

#: OpenAI's ``error.type`` for each status.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}

#: A stable machine-readable ``error.code`` per class (the most specific class wins).
_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (Unauthorized, "invalid_api_key"),
    (NotFound, "not_found"),
    (InputTooLong, "input_too_long"),
    (TooManyInputs, "too_many_inputs"),
    (EmptyInput, "empty_input"),
    (BadRequest, "invalid_value"),
    (Overloaded, "overloaded"),
    (Unavailable, "unavailable"),
    (BackendError, "backend_error"),
    (InputError, "invalid_input"),
    (EmbedlabError, "invalid_value"),
)


def status_of(exc: BaseException) -> int:
    """The HTTP status for an exception: its class's ``http_status``; 500 for anything unexpected."""
    status = getattr(exc, "http_status", None)
    if isinstance(status, int) and 400 <= status <= 599:
        return status
    return 422 if isinstance(exc, EmbedlabError) else 500


def error_body(message: str, status: int, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
            "param": param,
            "code": code,
        }
    }


def exception_body(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for an exception raised anywhere below a handler."""
    status = status_of(exc)
    if status >= 500 and not isinstance(exc, EmbedlabError):
        message = "internal error: the server logged the details"
    else:
        message = str(exc) or type(exc).__name__
    code = next((c for cls, c in _CODES if isinstance(exc, cls)), None)
    headers: dict[str, str] = {}
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, int(exc.retry_after)))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return status, error_body(message, status, code=code, param=getattr(exc, "param", None)), headers


__all__ = [
    "BadRequest",
    "InputTooLong",
    "NotFound",
    "TooManyInputs",
    "Unauthorized",
    "error_body",
    "exception_body",
    "status_of",
]
