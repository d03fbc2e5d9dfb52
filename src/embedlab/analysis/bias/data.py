"""Word lists and tests: the shipped WEAT/SEAT tests and templates, user test files, the debiaswe lists."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from embedlab.errors import ConfigError, InputError

MAX_EXACT = 100_000
N_RANDOM = 100_000
SET_KEYS = ("X", "Y", "A", "B")
KINDS = ("name", "noun", "word")
DEBIASWE_FILES = ("definitional_pairs", "equalize_pairs", "gender_specific_seed", "gender_specific_full", "professions")


@dataclass(frozen=True)
class WordSet:
    """A named list of words; ``kind`` picks the SEAT templates (name, noun or word)."""

    name: str
    words: tuple[str, ...]
    kind: str = "word"


@dataclass(frozen=True)
class BiasTest:
    """A WEAT test: targets X, Y and attributes A, B."""

    name: str
    X: WordSet
    Y: WordSet
    A: WordSet
    B: WordSet
    title: str = ""
    source: str = ""
    note: str = ""

    def sets(self) -> dict[str, WordSet]:
        return {"X": self.X, "Y": self.Y, "A": self.A, "B": self.B}


def _bias_data(name: str) -> Any:
    return json.loads((resources.files("embedlab.analysis") / "bias_data" / name).read_text(encoding="utf-8"))


def _word_set(test: str, key: str, value: Any) -> WordSet:
    where = f"bias test {test!r}, set {key}"
    if isinstance(value, list):
        value = {"name": key, "words": value}
    if not isinstance(value, dict) or not isinstance(value.get("words"), list):
        raise InputError(f"{where}: give a list of words or {{name, words, kind}}")
    words = value["words"]
    if not all(isinstance(w, str) and w.strip() for w in words):
        raise InputError(f"{where}: every word must be a non-empty string")
    kind = value.get("kind", "word")
    if kind not in KINDS:
        raise InputError(f"{where}: kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return WordSet(str(value.get("name", key)), tuple(w.strip() for w in words), kind)


def make_test(name: str, spec: dict[str, Any]) -> BiasTest:
    """A validated :class:`BiasTest` from a mapping with X, Y, A, B (lists or {name, words, kind})."""
    if not isinstance(spec, dict):
        raise InputError(f"bias test {name!r}: expected a mapping with X, Y, A, B")
    missing = [k for k in SET_KEYS if k not in spec]
    if missing:
        raise InputError(f"bias test {name!r}: missing set(s) {', '.join(missing)}; a test needs X, Y, A and B")
    sets = {k: _word_set(name, k, spec[k]) for k in SET_KEYS}
    test = BiasTest(
        name,
        **sets,
        title=str(spec.get("title", "")),
        source=str(spec.get("source", "")),
        note=str(spec.get("note", "")),
    )
    check_sizes(name, {k: len(s.words) for k, s in sets.items()})
    return test


def check_sizes(name: str, sizes: dict[str, int]) -> None:
    """Each set needs at least two words, and the targets equal sizes (WEAT's partitions are halves)."""
    small = [f"{k}={n}" for k, n in sizes.items() if n < 2]
    if small:
        raise InputError(f"bias test {name!r}: every set needs at least 2 words; got {', '.join(small)}")
    if sizes["X"] != sizes["Y"]:
        raise InputError(
            f"bias test {name!r}: target sets X and Y must be the same size for WEAT; got {sizes['X']} and {sizes['Y']}"
        )


def builtin_tests() -> dict[str, BiasTest]:
    """WEAT 1-10 (Caliskan et al. 2017), by name (``weat1`` ... ``weat10``)."""
    data = _bias_data("weat.json")
    return {name: make_test(name, spec) for name, spec in data["tests"].items()}


def seat_templates() -> dict[str, list[str]]:
    """The SEAT templates per word kind (``{w}`` the word, ``{W}`` capitalised, ``{a}``/``{A}`` its article)."""
    return _bias_data("seat_templates.json")["templates"]


def load_tests(path: str | Path) -> list[BiasTest]:
    """User tests from YAML or JSON: one test ``{X, Y, A, B, [title]}``, a mapping of name -> test, or
    ``{"tests": {name: test}}``. Sets are word lists or ``{name, words, kind}``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"bias test file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml and json raise their own parse errors
        raise InputError(
            f"{path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'} "
            f"({str(exc).splitlines()[0]})"
        ) from None
    if isinstance(data, dict) and "tests" in data:
        data = data["tests"]
    if isinstance(data, dict) and any(k in data for k in SET_KEYS):
        return [make_test(path.stem, data)]
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected one test with X, Y, A, B or a mapping of test names to tests")
    return [make_test(str(name), spec) for name, spec in data.items()]


def select_tests(spec: str | Path | None) -> list[BiasTest]:
    """``None``/``weat``/``all``: WEAT 1-10; ``weat3,weat6``: those; a path: the file's tests."""
    builtin = builtin_tests()
    if spec is None or str(spec).lower() in ("weat", "seat", "all", "weat,seat"):
        return list(builtin.values())
    if Path(spec).suffix.lower() in (".json", ".yaml", ".yml") or Path(spec).is_file():
        return load_tests(spec)
    chosen: list[BiasTest] = []
    for name in str(spec).split(","):
        key = name.strip().lower()
        if key not in builtin:
            raise ConfigError(
                f"unknown bias test {name.strip()!r}; built in: {', '.join(builtin)} (or give a YAML/JSON file)"
            )
        if all(t.name != builtin[key].name for t in chosen):  # "weat3,weat3" runs weat3 once
            chosen.append(builtin[key])
    return chosen


def seat_sentences(words: Iterable[str], kind: str, templates: dict[str, list[str]] | None = None) -> list[str]:
    """Each word placed in each template of its kind (May et al. 2019)."""
    templates = templates or seat_templates()
    if kind not in templates:
        raise InputError(f"no SEAT templates for word kind {kind!r}; kinds: {', '.join(templates)}")
    out = []
    for w in words:
        a = "an" if w[:1].lower() in "aeiou" else "a"
        for t in templates[kind]:
            out.append(t.format(w=w, W=w[:1].upper() + w[1:], a=a, A=a.capitalize()))
    return out


def debiaswe_lists(directory: str | Path | None = None) -> dict[str, Any]:
    """Bolukbasi et al.'s lists (``tolga-b/debiaswe`` data/): definitional and equalize pairs,
    gender-specific words (seed and full) and professions, read from ``directory`` (default
    ``$EMBEDLAB_DATA/debiaswe``)."""
    if directory is None:
        from embedlab.settings import data_dir

        root = data_dir()
        if root is None:
            raise InputError(
                "the debiaswe word lists were not found: set EMBEDLAB_DATA (with a debiaswe/ folder) or pass the folder"
            )
        directory = root / "debiaswe"
    directory = Path(directory)
    out: dict[str, Any] = {}
    for name in DEBIASWE_FILES:
        path = directory / f"{name}.json"
        if not path.is_file():
            raise InputError(
                f"debiaswe list missing: {path} (expected {', '.join(f + '.json' for f in DEBIASWE_FILES)})"
            )
        try:
            out[name] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON ({exc.msg})") from None
    out["professions"] = [p[0] if isinstance(p, list) else p for p in out["professions"]]
    return out


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Word pairs from a JSON file ``[[a, b], ...]`` (the debiaswe format)."""
    path = Path(path)
    from embedlab.io import read_json

    data = read_json(path, InputError, "pair list")
    if not isinstance(data, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(w, str) for w in p) for p in data
    ):
        raise InputError(f"{path}: expected a JSON list of [word, word] pairs")
    return [(a, b) for a, b in data]


def phrase(word: str) -> str:
    """debiaswe writes multi-word entries with underscores (``adjunct_professor``); sentence encoders get spaces."""
    return word.replace("_", " ")
