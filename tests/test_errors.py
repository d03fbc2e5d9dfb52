"""embedlab.errors: the hierarchy, exit codes and HTTP statuses, against a table written by hand from the
module's documented tree (2 for usage/configuration, 1 for runtime; the server's status codes)."""

from __future__ import annotations

import re

import pytest

import embedlab.errors as errors
from embedlab.errors import exit_code_of

# class: (parent, exit code, HTTP status) -- copied by hand from the tree in the module docstring
EXPECTED = {
    "EmbedlabError": ("Exception", 1, 422),
    "ConfigError": ("EmbedlabError", 2, 422),
    "UsageError": ("ConfigError", 2, 422),
    "OutputPathError": ("ConfigError", 2, 422),
    "PoolingError": ("ConfigError", 2, 422),
    "CodecError": ("ConfigError", 2, 422),
    "ModelNotFoundError": ("EmbedlabError", 1, 404),
    "InputError": ("EmbedlabError", 1, 422),
    "EmptyInput": ("InputError", 1, 400),
    "DatasetError": ("InputError", 1, 422),
    "InputTooLong": ("InputError", 1, 413),
    "TooManyInputs": ("InputError", 1, 400),
    "BadRequest": ("InputError", 1, 400),
    "IndexStoreError": ("EmbedlabError", 1, 422),
    "ShardError": ("EmbedlabError", 1, 422),
    "ExportError": ("EmbedlabError", 1, 422),
    "TrainingDiverged": ("EmbedlabError", 1, 422),
    "BackendError": ("EmbedlabError", 1, 500),
    "Overloaded": ("EmbedlabError", 1, 429),
    "Unavailable": ("EmbedlabError", 1, 503),
    "Unauthorized": ("EmbedlabError", 1, 401),
    "NotFound": ("EmbedlabError", 1, 404),
    "ClientGone": ("EmbedlabError", 1, 499),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_class_has_its_documented_parent_and_codes(name):
    parent, exit_code, status = EXPECTED[name]
    cls = getattr(errors, name)
    assert cls.__bases__[0].__name__ == parent
    assert (cls.exit_code, cls.http_status) == (exit_code, status)
    exc = cls("a message")
    assert str(exc) == "a message" and exit_code_of(exc) == exit_code
    assert isinstance(exc, errors.EmbedlabError)


def test_the_table_covers_every_exported_class():
    classes = {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    assert classes == set(EXPECTED)


def test_the_docstring_tree_names_every_class_with_its_codes():
    """The tree in the module docstring says the same (a status left out there is the inherited 422)."""
    for name, (_, exit_code, status) in EXPECTED.items():
        found = re.search(rf"\b{name} \((\d)(?:, (\d+))?\)", errors.__doc__)
        assert found, name
        assert int(found[1]) == exit_code and int(found[2] or 422) == status, found[0]


def test_extra_attributes():
    assert errors.BadRequest("x").param is None and errors.BadRequest("x", param="dimensions").param == "dimensions"
    assert errors.Overloaded("busy").retry_after == 1 and errors.Overloaded("busy", retry_after=7).retry_after == 7


class _Odd(Exception):
    def __init__(self, code):
        super().__init__("odd")
        self.exit_code = code


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ValueError("not ours"), 1),
        (KeyError("k"), 1),
        (_Odd(3), 3),
        (_Odd(125), 125),
        (_Odd(0), 1),  # 0 would report success
        (_Odd(126), 1),  # 126+ are the shell's (not executable, not found, signals)
        (_Odd(-2), 1),
        (_Odd("2"), 1),
        (_Odd(2.0), 1),
        (_Odd(None), 1),
    ],
)
def test_exit_code_of_any_exception(exc, code):
    assert exit_code_of(exc) == code
