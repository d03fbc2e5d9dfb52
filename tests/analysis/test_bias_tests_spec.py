"""embedlab.analysis.bias_tests_spec: the ``--tests``/``--mode`` grammar, on hand-worked cases; built-in
names checked against the ten WEAT tests of Caliskan et al. (2017)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import embedlab.analysis.bias_tests_spec as spec_module
from embedlab.analysis.bias_tests_spec import parse_tests_spec, select
from embedlab.errors import ConfigError, EmbedlabError, exit_code_of


@pytest.mark.parametrize(
    ("spec", "mode", "expected"),
    [
        ("weat,seat", None, (None, ["weat", "seat"])),
        ("seat,weat", None, (None, ["seat", "weat"])),
        ("weat", None, (None, ["weat"])),
        ("SEAT", None, (None, ["seat"])),
        ("weat3", None, ("weat3", ["weat", "seat"])),  # names only: both modes
        (" weat3 , weat6 ,", None, ("weat3,weat6", ["weat", "seat"])),
        ("weat3,seat", None, ("weat3", ["seat"])),
        ("mine.yaml", None, (Path("mine.yaml"), ["weat", "seat"])),
        ("dir/Mine.JSON,weat", None, (Path("dir/Mine.JSON"), ["weat"])),
        ("t.yml", "seat", (Path("t.yml"), ["seat"])),
        ("weat", "seat", (None, ["seat"])),  # --mode overrides the modes the list names
        ("seat", "both", (None, ["weat", "seat"])),
        ("weat3,weat6", "weat", ("weat3,weat6", ["weat"])),
    ],
)
def test_the_grammar(spec, mode, expected):
    assert parse_tests_spec(spec, mode) == expected


def test_the_docstring_examples():
    assert doctest.testmod(spec_module).failed == 0


@pytest.mark.parametrize("spec", ["", " ", ",", " , ,"])
def test_an_empty_list_is_refused_not_read_as_everything(spec):
    with pytest.raises(ConfigError, match="--tests is empty: give weat,seat") as info:
        parse_tests_spec(spec)
    assert exit_code_of(info.value) == 2


@pytest.mark.parametrize("mode", ["WEAT", "all", "", "weat,seat"])
def test_an_unknown_mode_is_refused(mode):
    with pytest.raises(ConfigError, match=r"--mode must be weat, seat or both; got "):
        parse_tests_spec("weat", mode)


def test_select_returns_the_named_builtin_tests():
    tests, modes = select("weat3,WEAT10", "both")
    assert [t.name for t in tests] == ["weat3", "weat10"] and modes == ["weat", "seat"]
    everything, modes = select("weat,seat")
    assert [t.name for t in everything] == [f"weat{i}" for i in range(1, 11)] and modes == ["weat", "seat"]


def test_an_unknown_test_name_fails_before_any_model():
    with pytest.raises(EmbedlabError, match=r"unknown bias test 'weat11'; built in: weat1, .*, weat10"):
        select("weat3,weat11")


def test_an_unknown_test_name_is_a_usage_error():
    with pytest.raises(EmbedlabError) as info:
        select("weat11")
    assert exit_code_of(info.value) == 2


def test_a_mode_named_twice_runs_once():
    assert parse_tests_spec("weat,WEAT") == (None, ["weat"])


def test_a_test_named_twice_is_selected_once():
    tests, _ = select("weat3,WEAT3,weat6")
    assert [t.name for t in tests] == ["weat3", "weat6"]
