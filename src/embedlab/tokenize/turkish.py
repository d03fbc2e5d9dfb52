"""%TR and %Pure (Bayram et al. 2025, "Tokenization Standards for Linguistic Integrity: Turkish as a
Benchmark", arXiv 2502.07057), computed offline from word and morpheme lists.

A token is first reduced to its surface piece: decoded on its own, word-start marker removed
(``LoadedTokenizer.piece``). Then

- **Turkish-valid (%TR)**: the piece is in the Turkish lexicon (roots, suffixes and dictionary words);
- **pure (%Pure)**: the piece is a single morpheme: a root or a suffix of the morpheme inventory.

Both are reported twice, with names that say what they divide by:

- ``*_tokens``: over all tokens of the corpus (the paper's worked example in its text);
- ``*_types``: over the unique pieces (what the paper's code and tables compute).

Deviations from the paper, by necessity:

- the paper's code asks two web services when its local list does not decide (ITU "IsTurkish" for
  validity, ITU "MorphAnalyzer" for purity). They are not reachable here. Validity uses the paper's
  own local list plus a TDK dictionary headword list; purity uses the local list plus two published
  root lists and three suffix inventories. A headword list has no inflected forms, so an inflected
  word piece ("evler") that IsTurkish would accept counts as not valid: %TR here is a lower bound of
  the paper's, most so for tokenizers with long whole-word tokens;
- lookups ignore case with Turkish casing rules (``I``->``ı``, ``İ``->``i``); the paper's list holds
  each entry in two cases, which this generalises;
- pieces that are empty after removing the marker (a bare ``▁``/``Ġ``, a whitespace token, the
  ``<uppercase>`` marker) are left out of both numerator and denominator and counted as ``n_empty``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from embedlab.errors import ConfigError

# file name -> which sets it feeds ("valid" = %TR lexicon, "pure" = morpheme inventory; pure feeds valid too)
LEXICON_FILES: dict[str, str] = {
    "tokenizer_benchmark_ekler_kokler.txt": "pure",  # the paper authors' local root+affix list
    "turkce_kokler_roots_filtered.txt": "pure",  # the same author's filtered root list
    "turkish_tokenizer_roots.tsv": "pure",  # roots of the turkish-tokenizer package (special tokens dropped)
    "turkish_tokenizer_suffixes.tsv": "pure",  # its suffixes, allomorphs listed separately
    "turkce_kokler_ekler.json": "pure",  # suffix inventory by category (+ conjunctions, interjections)
    "tdk_kelimeler.txt": "valid",  # TDK dictionary headwords: the offline stand-in for IsTurkish
}
_SPECIAL = re.compile(r"^(<[^>]*>|special_\d+|\\[tn]|\s*)$")


def tr_lower(text: str) -> str:
    """Lower-case with Turkish rules: I -> ı and İ -> i before the generic lower()."""
    return text.replace("I", "ı").replace("İ", "i").lower()


def _read_entries(path: Path) -> list[str]:
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        values = data.values() if isinstance(data, dict) else [data]
        return [w for group in values for w in (group if isinstance(group, list) else [group]) if isinstance(w, str)]
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".tsv":
        lines = [line.split("\t")[0] for line in lines[1:]]  # first line is the header
    return [w for w in lines if not _SPECIAL.match(w)]


@dataclass(frozen=True)
class TurkishLexicon:
    """Two word sets, stored lower-cased with ``tr_lower``: ``valid`` (every Turkish word or morpheme
    known) and ``pure`` (single morphemes: roots and suffixes). ``pure`` is a subset of ``valid``."""

    valid: frozenset[str]
    pure: frozenset[str]
    description: str = "hand-made"

    @classmethod
    def from_words(
        cls, valid: Iterable[str], pure: Iterable[str] = (), description: str = "hand-made"
    ) -> "TurkishLexicon":
        pure_set = frozenset(tr_lower(w) for w in pure if w.strip())
        return cls(frozenset(tr_lower(w) for w in valid if w.strip()) | pure_set, pure_set, description)

    @classmethod
    def load(cls, directory: str | Path | None = None) -> "TurkishLexicon":
        """Read the lists named in ``LEXICON_FILES`` from ``directory`` (default: the shared data's
        ``turkish/morphemes``, found through ``$EMBEDLAB_DATA`` or ``../shared/data``)."""
        if directory is None:
            from embedlab.settings import data_dir

            base = data_dir()
            if base is None:
                raise ConfigError(
                    "no Turkish lexicon: ../shared/data is not next to the checkout and $EMBEDLAB_DATA is unset; pass --lexicon DIR"
                )
            directory = base / "turkish" / "morphemes"
        directory = Path(directory)
        missing = [n for n in LEXICON_FILES if not (directory / n).is_file()]
        if missing:
            raise ConfigError(f"Turkish lexicon directory {directory} lacks {', '.join(missing)}")
        valid: list[str] = []
        pure: list[str] = []
        for name, role in LEXICON_FILES.items():
            (pure if role == "pure" else valid).extend(_read_entries(directory / name))
        lex = cls.from_words(valid, pure, description=f"offline lists in {directory}")
        return lex

    def is_valid(self, piece: str) -> bool:
        return tr_lower(piece) in self.valid

    def is_pure(self, piece: str) -> bool:
        return tr_lower(piece) in self.pure


@dataclass
class TurkishScores:
    """%TR and %Pure in both variants, as fractions in [0, 1], with the counts behind them."""

    tr_tokens: float  # valid tokens / all (non-empty) tokens
    pure_tokens: float  # pure tokens / all (non-empty) tokens
    tr_types: float  # valid unique pieces / unique pieces  (the paper's tables)
    pure_types: float  # pure unique pieces / unique pieces
    n_tokens: int
    n_types: int
    n_tr_tokens: int
    n_pure_tokens: int
    n_tr_types: int
    n_pure_types: int
    n_empty: int  # tokens whose piece is empty once the marker is removed (left out above)
    lexicon: str = field(default="")

    def to_dict(self) -> dict:
        return asdict(self)


def turkish_scores(pieces: Counter[str] | dict[str, int], lexicon: TurkishLexicon) -> TurkishScores:
    """Score a multiset of surface pieces (piece -> number of occurrences in the corpus)."""
    n_empty = sum(c for p, c in pieces.items() if not p.strip())
    kept = {p: c for p, c in pieces.items() if p.strip() and c > 0}
    n_tokens = sum(kept.values())
    valid = {p for p in kept if lexicon.is_valid(p)}
    pure = {p for p in kept if lexicon.is_pure(p)}
    n_tr = sum(kept[p] for p in valid)
    n_pure = sum(kept[p] for p in pure)

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return TurkishScores(
        tr_tokens=ratio(n_tr, n_tokens),
        pure_tokens=ratio(n_pure, n_tokens),
        tr_types=ratio(len(valid), len(kept)),
        pure_types=ratio(len(pure), len(kept)),
        n_tokens=n_tokens,
        n_types=len(kept),
        n_tr_tokens=n_tr,
        n_pure_tokens=n_pure,
        n_tr_types=len(valid),
        n_pure_types=len(pure),
        n_empty=n_empty,
        lexicon=lexicon.description,
    )
