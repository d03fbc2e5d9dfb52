"""Bias in embeddings: WEAT and SEAT with exact permutation tests, the bias subspace, DirectBias,
hard debiasing (neutralise, equalise) and the Gonen & Goldberg clustering check.

Implemented from the papers (no code copied):

* WEAT (Caliskan, Bryson & Narayanan, *Science* 2017). For target sets X, Y (equal size) and
  attribute sets A, B: ``s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)``; the statistic
  ``S = sum_x s(x) - sum_y s(y)``; the effect size ``d = (mean_x s - mean_y s) / std_{w in X∪Y} s(w)``
  (sample standard deviation, ``ddof=1``). The one-sided p-value is the share of the equal-size
  partitions (X_i, Y_i) of X ∪ Y whose statistic is at least the observed one: every partition
  when there are at most ``max_exact`` (10⁵) of them, otherwise ``n_random`` (10⁵) seeded random
  permutations *without replacement* of the pooled set, with the (b + 1) / (m + 1) estimator so a
  sampled p is never 0. Caliskan writes ``>``; we count ``>=`` (the observed partition is one of
  the partitions, so an exact p is never 0 either).
* SEAT (May et al., NAACL 2019): WEAT over sentence vectors, each word slotted into
  "semantically bleached" templates; each sentence is one member of its set.
* The bias subspace, DirectBias_c, neutralise and equalise (Bolukbasi et al., NeurIPS 2016).
* The clustering check of Gonen & Goldberg (NAACL 2019, *Lipstick on a Pig*).

Anything that embeds is an *encoder*: an :class:`~embedlab.models.Embedder`, a :class:`StaticVectors`
(word vectors from a word2vec/GloVe text file), or any object with ``encode(list[str]) -> array``.
Static vectors have a vocabulary; words missing from it are reported and skipped.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from embedlab.errors import ConfigError, InputError

MAX_EXACT = 100_000
N_RANDOM = 100_000
SET_KEYS = ("X", "Y", "A", "B")
KINDS = ("name", "noun", "word")
DEBIASWE_FILES = ("definitional_pairs", "equalize_pairs", "gender_specific_seed", "gender_specific_full", "professions")


# ================================================================================================
# word lists and tests
# ================================================================================================
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
    return json.loads(resources.files("embedlab.analysis").joinpath("bias_data", name).read_text(encoding="utf-8"))


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
    test = BiasTest(name, **sets, title=str(spec.get("title", "")), source=str(spec.get("source", "")),
                    note=str(spec.get("note", "")))
    check_sizes(name, {k: len(s.words) for k, s in sets.items()})
    return test


def check_sizes(name: str, sizes: dict[str, int]) -> None:
    """Each set needs at least two words, and the targets equal sizes (WEAT's partitions are halves)."""
    small = [f"{k}={n}" for k, n in sizes.items() if n < 2]
    if small:
        raise InputError(f"bias test {name!r}: every set needs at least 2 words; got {', '.join(small)}")
    if sizes["X"] != sizes["Y"]:
        raise InputError(f"bias test {name!r}: target sets X and Y must be the same size for WEAT; "
                         f"got {sizes['X']} and {sizes['Y']}")


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
        raise InputError(f"{path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'} "
                         f"({str(exc).splitlines()[0]})") from None
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
    chosen = []
    for name in str(spec).split(","):
        key = name.strip().lower()
        if key not in builtin:
            raise InputError(f"unknown bias test {name.strip()!r}; built in: {', '.join(builtin)} (or give a YAML/JSON file)")
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
            raise InputError("the debiaswe word lists were not found: set EMBEDLAB_DATA (with a debiaswe/ folder) or pass the folder")
        directory = root / "debiaswe"
    directory = Path(directory)
    out: dict[str, Any] = {}
    for name in DEBIASWE_FILES:
        path = directory / f"{name}.json"
        if not path.is_file():
            raise InputError(f"debiaswe list missing: {path} (expected {', '.join(f + '.json' for f in DEBIASWE_FILES)})")
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
    if not isinstance(data, list) or not all(isinstance(p, list) and len(p) == 2 and all(isinstance(w, str) for w in p)
                                             for p in data):
        raise InputError(f"{path}: expected a JSON list of [word, word] pairs")
    return [(a, b) for a, b in data]


def phrase(word: str) -> str:
    """debiaswe writes multi-word entries with underscores (``adjunct_professor``); sentence encoders get spaces."""
    return word.replace("_", " ")


# ================================================================================================
# encoders
# ================================================================================================
class StaticVectors:
    """Static word vectors (a word2vec or GloVe text file, or a dict). ``encode`` looks words up;
    ``has`` says which words the vocabulary holds."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[0] != len(words) or not len(words):
            raise InputError("static vectors: need one row per word and at least one word")
        self.words = list(words)
        self.vectors = vectors
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_dict(cls, mapping: dict[str, Sequence[float]]) -> "StaticVectors":
        return cls(list(mapping), np.array([np.asarray(v, float) for v in mapping.values()]))

    @classmethod
    def from_file(cls, path: str | Path, limit: int | None = None) -> "StaticVectors":
        """word2vec text (an optional ``count dim`` header line) or GloVe text: ``word v1 v2 ...``."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"word vector file not found: {path}")
        words, rows, dim = [], [], None
        with open(path, encoding="utf-8", errors="strict") as f:
            for i, line in enumerate(f, 1):
                parts = line.rstrip("\n").rstrip().split(" ")
                if i == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header
                if len(parts) < 3:
                    raise InputError(f"{path}:{i}: expected 'word v1 v2 ...'")
                if dim is None:
                    dim = len(parts) - 1
                if len(parts) - 1 != dim:
                    raise InputError(f"{path}:{i}: {len(parts) - 1} numbers, the first line had {dim}")
                try:
                    rows.append([float(x) for x in parts[1:]])
                except ValueError:
                    raise InputError(f"{path}:{i}: not a number in the vector") from None
                words.append(parts[0])
                if limit and len(words) >= limit:
                    break
        return cls(words, np.array(rows))

    def has(self, word: str) -> bool:
        return word in self.index

    def encode(self, words: Sequence[str]) -> np.ndarray:
        missing = [w for w in words if w not in self.index]
        if missing:
            raise InputError(f"{len(missing)} word(s) not in the vocabulary, e.g. {missing[:5]}")
        return self.vectors[[self.index[w] for w in words]]

    def replace(self, updates: dict[str, np.ndarray]) -> "StaticVectors":
        """A copy with some rows replaced."""
        vectors = self.vectors.copy()
        for w, v in updates.items():
            vectors[self.index[w]] = v
        return StaticVectors(self.words, vectors)


def encode(encoder: Any, texts: Sequence[str]) -> np.ndarray:
    """Vectors (float64, one row per text) from any encoder."""
    if not len(texts):
        return np.zeros((0, 0))
    if hasattr(encoder, "encode"):
        vecs = encoder.encode(list(texts))
    elif callable(encoder):
        vecs = encoder(list(texts))
    else:
        raise ConfigError(f"cannot embed with a {type(encoder).__name__}: give an Embedder, StaticVectors or encode(texts)")
    vecs = np.asarray(vecs, dtype=np.float64)
    if vecs.ndim != 2 or vecs.shape[0] != len(texts):
        raise ConfigError(f"the encoder returned shape {vecs.shape} for {len(texts)} texts")
    return vecs


def known_words(encoder: Any, words: Sequence[str]) -> tuple[list[str], list[str]]:
    """(kept, missing): words an encoder with a vocabulary (``has``) lacks are missing; others keep all."""
    has = getattr(encoder, "has", None)
    if has is None:
        return list(words), []
    kept = [w for w in words if has(w)]
    return kept, [w for w in words if not has(w)]


# ================================================================================================
# WEAT statistics
# ================================================================================================
def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n == 0):
        raise InputError("a zero vector cannot be compared by cosine (an empty or all-zero embedding)")
    return v / n


def associations(W: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b), for each row w of W."""
    W, A, B = unit(W), unit(A), unit(B)
    return (W @ A.T).mean(axis=1) - (W @ B.T).mean(axis=1)


def weat_statistic(sx: np.ndarray, sy: np.ndarray) -> float:
    """S(X, Y, A, B) = sum_x s(x) - sum_y s(y)."""
    return float(np.sum(sx) - np.sum(sy))


def effect_size(sx: np.ndarray, sy: np.ndarray) -> float:
    """d = (mean_x s - mean_y s) / std_{w in X∪Y} s(w), sample std (``ddof=1``); 0 when every s is equal."""
    pooled = np.concatenate([sx, sy])
    sd = float(np.std(pooled, ddof=1))
    if sd == 0:
        return 0.0
    return float((np.mean(sx) - np.mean(sy)) / sd)


def n_partitions(n: int) -> int:
    """Ordered equal halves (X_i, Y_i) of a pooled set of 2n: C(2n, n)."""
    return math.comb(2 * n, n)


@dataclass
class PermutationResult:
    p_value: float
    method: str  # exact | random
    permutations: int  # partitions enumerated, or random permutations drawn
    seed: int | None


def permutation_p(sx: np.ndarray, sy: np.ndarray, *, max_exact: int = MAX_EXACT, n_random: int = N_RANDOM,
                  seed: int = 0, chunk: int = 10_000) -> PermutationResult:
    """One-sided p of S(X, Y): the share of equal-size partitions of X ∪ Y with S_i >= S.

    Since S_i = 2 · sum(s over X_i) - sum(s over X ∪ Y), only the sums of size-n subsets matter.
    Exact when C(2n, n) <= ``max_exact``; otherwise ``n_random`` seeded permutations of the pool
    (without replacement), p = (b + 1) / (m + 1)."""
    sx, sy = np.asarray(sx, float), np.asarray(sy, float)
    n = len(sx)
    if n != len(sy):
        raise InputError(f"the permutation test needs |X| = |Y|; got {len(sx)} and {len(sy)}")
    pool = np.concatenate([sx, sy])
    total = pool.sum()
    observed = 2 * sx.sum() - total
    tol = 1e-10 * max(1.0, float(np.abs(pool).sum()))
    count = n_partitions(n)
    if count <= max_exact:
        hits = 0
        combos = itertools.combinations(range(2 * n), n)
        while True:
            block = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, chunk)), dtype=np.int64)
            if not len(block):
                break
            stats = 2 * pool[block.reshape(-1, n)].sum(axis=1) - total
            hits += int(np.count_nonzero(stats >= observed - tol))
        return PermutationResult(hits / count, "exact", count, None)
    if n_random < 1:
        raise ConfigError(f"n_random must be positive; got {n_random}")
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < n_random:
        m = min(chunk, n_random - done)
        idx = rng.permuted(np.tile(np.arange(2 * n), (m, 1)), axis=1)[:, :n]
        stats = 2 * pool[idx].sum(axis=1) - total
        hits += int(np.count_nonzero(stats >= observed - tol))
        done += m
    return PermutationResult((hits + 1) / (n_random + 1), "random", n_random, seed)


@dataclass
class WeatResult:
    """One WEAT/SEAT test on one model."""

    test: str
    mode: str  # weat | seat
    effect_size: float
    statistic: float
    p_value: float
    p_method: str
    permutations: int
    seed: int | None
    sizes: dict[str, int]  # members of each set that were embedded (sentences for SEAT)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # words missing from a static vocabulary
    dropped: dict[str, list[str]] = field(default_factory=dict)  # words dropped to make |X| = |Y|
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def weat_from_vectors(X: np.ndarray, Y: np.ndarray, A: np.ndarray, B: np.ndarray, *, name: str = "test",
                      mode: str = "weat", max_exact: int = MAX_EXACT, n_random: int = N_RANDOM, seed: int = 0) -> WeatResult:
    """WEAT on vectors (rows)."""
    check_sizes(name, {"X": len(X), "Y": len(Y), "A": len(A), "B": len(B)})
    sx, sy = associations(X, A, B), associations(Y, A, B)
    perm = permutation_p(sx, sy, max_exact=max_exact, n_random=n_random, seed=seed)
    return WeatResult(name, mode, effect_size(sx, sy), weat_statistic(sx, sy), perm.p_value, perm.method,
                      perm.permutations, perm.seed, {"X": len(X), "Y": len(Y), "A": len(A), "B": len(B)})


class MemoEncoder:
    """Wraps an encoder: each distinct text is embedded once (tests share attribute lists)."""

    def __init__(self, encoder: Any) -> None:
        self.inner = encoder
        self.memo: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:  # ``has`` (static vocabularies) and the rest come from the encoder
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if new:
            for t, v in zip(new, encode(self.inner, new)):
                self.memo[t] = v
        return np.stack([self.memo[t] for t in texts]) if len(texts) else np.zeros((0, 0))


def _test_texts(encoder: Any, test: BiasTest, mode: str, templates: dict[str, list[str]] | None
                ) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """(texts per set, skipped, dropped) for one test in one mode."""
    if mode not in ("weat", "seat"):
        raise ConfigError(f"mode must be weat or seat; got {mode!r}")
    if mode == "seat" and hasattr(encoder, "has"):
        raise InputError("SEAT embeds sentences: static word vectors support WEAT only (use --mode weat)")
    words: dict[str, list[str]] = {}
    skipped: dict[str, list[str]] = {}
    for key, ws in test.sets().items():
        kept, missing = known_words(encoder, ws.words)
        words[key] = kept
        if missing:
            skipped[key] = missing
    dropped: dict[str, list[str]] = {}
    n = min(len(words["X"]), len(words["Y"]))
    for key in ("X", "Y"):
        if len(words[key]) > n:
            dropped[key] = words[key][n:]
            words[key] = words[key][:n]
    check_sizes(test.name, {k: len(v) for k, v in words.items()})
    sets = test.sets()
    texts = {k: (seat_sentences(v, sets[k].kind, templates) if mode == "seat" else list(v)) for k, v in words.items()}
    return texts, skipped, dropped


def run_test(encoder: Any, test: BiasTest, *, mode: str = "weat", templates: dict[str, list[str]] | None = None,
             max_exact: int = MAX_EXACT, n_random: int = N_RANDOM, seed: int = 0) -> WeatResult:
    """WEAT (each word embedded alone) or SEAT (each word in each template of its kind) for one test.

    Words missing from a static vocabulary are skipped and listed in ``skipped``; if that leaves
    |X| != |Y|, the last words of the longer target list are dropped (listed in ``dropped``)."""
    texts, skipped, dropped = _test_texts(encoder, test, mode, templates)
    order = [t for k in SET_KEYS for t in texts[k]]
    unique = list(dict.fromkeys(order))
    vecs = encode(encoder, unique)
    pos = {t: i for i, t in enumerate(unique)}
    mats = {k: vecs[[pos[t] for t in texts[k]]] for k in SET_KEYS}
    result = weat_from_vectors(mats["X"], mats["Y"], mats["A"], mats["B"], name=test.name, mode=mode,
                               max_exact=max_exact, n_random=n_random, seed=seed)
    result.skipped, result.dropped, result.title = skipped, dropped, test.title
    return result


def run_tests(encoder: Any, tests: Sequence[BiasTest], modes: Sequence[str] = ("weat", "seat"),
              templates: dict[str, list[str]] | None = None, **kwargs: Any) -> list[WeatResult]:
    """Every test in every mode; all distinct texts are embedded in one call first."""
    memo = MemoEncoder(encoder)
    pending = []
    for m in modes:
        for t in tests:
            texts, _, _ = _test_texts(memo, t, m, templates)
            pending += [x for k in SET_KEYS for x in texts[k]]
    memo.encode(list(dict.fromkeys(pending)))
    return [run_test(memo, t, mode=m, templates=templates, **kwargs) for m in modes for t in tests]


# ================================================================================================
# the bias subspace (Bolukbasi et al. 2016)
# ================================================================================================
@dataclass
class Subspace:
    """An orthonormal basis (k, d) of the bias subspace, and the variance share of each principal
    component of the centred definitional pairs (all of them, not only the k kept)."""

    basis: np.ndarray
    explained_variance_ratio: list[float]
    pairs: int

    @property
    def k(self) -> int:
        return int(self.basis.shape[0])

    @property
    def dim(self) -> int:
        return int(self.basis.shape[1])

    def project(self, V: np.ndarray) -> np.ndarray:
        """The component of each row inside the subspace (w_B)."""
        V = np.asarray(V, float)
        return (V @ self.basis.T) @ self.basis

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "dim": self.dim, "pairs": self.pairs,
                "explained_variance_ratio": [round(float(x), 6) for x in self.explained_variance_ratio],
                "basis": self.basis.tolist()}


def subspace_from_pairs(a: np.ndarray, b: np.ndarray, k: int = 1, n_components: int = 10) -> Subspace:
    """PCA over the centred pairs: for each pair (a, b) with mean μ, the rows a − μ and b − μ (vectors
    unit-normalised first, as in the paper); the top ``k`` components are the subspace."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2 or not len(a):
        raise InputError("the bias subspace needs at least one pair of equal-width vectors")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"subspace: 'k' must be a positive integer; got {k!r}")
    a, b = unit(a), unit(b)
    mu = (a + b) / 2
    rows = np.concatenate([a - mu, b - mu])
    _, s, vt = np.linalg.svd(rows, full_matrices=False)
    var = s**2
    total = var.sum()
    scale = max(1.0, float(np.abs(rows).max()))
    rank = int(np.count_nonzero(s > 1e-8 * scale * max(rows.shape)))
    if total <= 0 or rank == 0:
        raise InputError("degenerate bias subspace: every pair's two vectors are identical, so the pairs span no direction")
    if k > rank:
        raise InputError(f"the definitional pairs span only {rank} direction(s); cannot take a {k}-dimensional subspace")
    m = min(n_components, len(s))
    return Subspace(vt[:k].copy(), (var[:m] / total).tolist(), len(a))


def bias_subspace(encoder: Any, pairs: Sequence[tuple[str, str]], k: int = 1, *, templates: Sequence[str] | None = None,
                  n_components: int = 10) -> tuple[Subspace, list[tuple[str, str]]]:
    """The subspace from definitional word pairs embedded alone (or in each of ``templates``, with
    ``{w}`` for the word: every (pair, template) becomes one pair). Pairs with a word missing from
    a static vocabulary are skipped and returned."""
    pairs = [(phrase(x), phrase(y)) if not hasattr(encoder, "has") else (x, y) for x, y in pairs]
    kept = [(x, y) for x, y in pairs if not hasattr(encoder, "has") or (encoder.has(x) and encoder.has(y))]
    skipped = [p for p in pairs if p not in kept]
    if not kept:
        raise InputError("no definitional pair has both words in the vocabulary")
    forms = list(templates) if templates else ["{w}"]
    left = [t.format(w=x) for x, _ in kept for t in forms]
    right = [t.format(w=y) for _, y in kept for t in forms]
    vecs = encode(encoder, left + right)
    return subspace_from_pairs(vecs[: len(left)], vecs[len(left):], k, n_components), skipped


def subspace_cosines(V: np.ndarray, subspace: Subspace) -> np.ndarray:
    """|cos(w, B)| = ||w_B|| / ||w|| per row (for k = 1, |cos(w, g)|)."""
    V = unit(V)
    return np.linalg.norm(V @ subspace.basis.T, axis=1)


def direct_bias(V: np.ndarray, subspace: Subspace, c: float = 1.0) -> float:
    """DirectBias_c = mean over the (neutral) words of |cos(w, g)|^c (Bolukbasi et al., eq. in §5)."""
    V = np.asarray(V, float)
    if not len(V):
        raise InputError("DirectBias needs at least one neutral word")
    return float(np.mean(subspace_cosines(V, subspace) ** c))


def indirect_bias(w: np.ndarray, v: np.ndarray, subspace: Subspace) -> float:
    """β(w, v) = (w·v − w⊥·v⊥ / (||w⊥|| ||v⊥||)) / (w·v) for unit w, v, with w⊥ = w − w_B: the share of
    the similarity of w and v that the bias subspace accounts for (Bolukbasi et al., §5)."""
    w, v = unit(np.asarray(w, float)[None])[0], unit(np.asarray(v, float)[None])[0]
    wp, vp = w - subspace.project(w[None])[0], v - subspace.project(v[None])[0]
    dot = float(w @ v)
    if dot == 0:
        raise InputError("indirect bias is undefined for orthogonal vectors (w·v = 0)")
    if np.linalg.norm(wp) == 0 or np.linalg.norm(vp) == 0:
        raise InputError("indirect bias is undefined for a vector inside the bias subspace")
    return float((dot - (wp @ vp) / (np.linalg.norm(wp) * np.linalg.norm(vp))) / dot)


def neutralise(V: np.ndarray, subspace: Subspace) -> np.ndarray:
    """w ← (w − w_B) / ||w − w_B||: neutral words lose their component in the subspace."""
    V = np.asarray(V, float)
    return unit(V - subspace.project(V))


def equalise(a: np.ndarray, b: np.ndarray, subspace: Subspace) -> tuple[np.ndarray, np.ndarray]:
    """Equalise one family {a, b}: μ = (a+b)/2, ν = μ − μ_B, and each w ← ν + sqrt(1 − ||ν||²) ·
    (w_B − μ_B)/||w_B − μ_B||, so both are unit vectors equidistant from every neutral word."""
    pair = unit(np.stack([np.asarray(a, float), np.asarray(b, float)]))
    mu = pair.mean(axis=0)
    mu_b = subspace.project(mu[None])[0]
    nu = mu - mu_b
    z = math.sqrt(max(0.0, 1.0 - float(nu @ nu)))
    out = []
    for w in pair:
        d = subspace.project(w[None])[0] - mu_b
        norm = np.linalg.norm(d)
        if norm == 0:
            raise InputError("cannot equalise a pair whose words do not differ inside the bias subspace")
        out.append(nu + z * d / norm)
    return out[0], out[1]


def expand_case(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """lower, Title and UPPER variants of each pair (as the debiaswe code does)."""
    out: list[tuple[str, str]] = []
    for a, b in pairs:
        for f in (str.lower, str.title, str.upper):
            p = (f(a), f(b))
            if p not in out:
                out.append(p)
    return out


@dataclass
class HardDebiasReport:
    neutralised: int
    equalised: int
    skipped_pairs: list[tuple[str, str]]


def hard_debias(vectors: StaticVectors, subspace: Subspace, gender_specific: Iterable[str],
                equalize_pairs: Iterable[tuple[str, str]]) -> tuple[StaticVectors, HardDebiasReport]:
    """Bolukbasi's hard debiasing of static word vectors: unit-normalise everything, neutralise every
    word not in ``gender_specific``, then equalise each pair (case variants included) whose two
    words are in the vocabulary."""
    specific = set(gender_specific)
    V = unit(vectors.vectors)
    neutral = np.array([w not in specific for w in vectors.words])
    V[neutral] = neutralise(V[neutral], subspace)
    out = StaticVectors(vectors.words, V)
    updates, done, skipped = {}, 0, []
    for a, b in expand_case(equalize_pairs):
        if out.has(a) and out.has(b):
            ea, eb = equalise(out.encode([a])[0], out.encode([b])[0], subspace)
            updates[a], updates[b] = ea, eb
            done += 1
        else:
            skipped.append((a, b))
    return out.replace(updates), HardDebiasReport(int(neutral.sum()), done, skipped)


# ================================================================================================
# Gonen & Goldberg (2019): is the removed bias still recoverable?
# ================================================================================================
@dataclass
class ClusteringCheck:
    words: int  # per side
    alignment_before: float
    alignment_after: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cluster_alignment(V: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """K-means (k = 2) on the rows; the share of rows whose cluster matches its label, under the
    better of the two cluster-to-label assignments (0.5 = no alignment, 1 = perfect)."""
    from sklearn.cluster import KMeans

    pred = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(unit(V))
    acc = float(np.mean(pred == labels))
    return max(acc, 1 - acc)


def gonen_goldberg(before: np.ndarray, after: np.ndarray, subspace: Subspace, n: int = 500, seed: int = 0) -> ClusteringCheck:
    """Take the ``n`` words projecting most positively and the ``n`` most negatively on the original
    direction (the first basis vector) in the *original* vectors, label them by side, cluster the
    original and the debiased vectors of those words into two clusters, and report how well each
    clustering recovers the labels."""
    before, after = np.asarray(before, float), np.asarray(after, float)
    if before.shape[0] != after.shape[0]:
        raise InputError("before and after must hold the same words")
    proj = unit(before) @ subspace.basis[0]
    n = min(n, len(proj) // 2)
    if n < 2:
        raise InputError("the clustering check needs at least 4 words")
    order = np.argsort(proj)
    idx = np.concatenate([order[:n], order[-n:]])
    labels = np.array([0] * n + [1] * n)
    return ClusteringCheck(n, cluster_alignment(before[idx], labels, seed), cluster_alignment(after[idx], labels, seed), seed)


def vocabulary_words(tokenizer: Any, exclude: Iterable[str] = (), limit: int = 20_000, min_len: int = 3) -> list[str]:
    """Whole lower-case alphabetic words of a subword tokenizer's vocabulary (WordPiece: no ``##``;
    byte-level BPE: a leading ``Ġ``), in vocabulary-id order, minus ``exclude``, at most ``limit``."""
    vocab = tokenizer.get_vocab()
    excluded = {w.lower() for w in exclude}
    bpe = any(t.startswith("Ġ") for t in vocab)
    out, seen = [], set()
    for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        if bpe:
            if not tok.startswith("Ġ"):
                continue
            tok = tok[1:]
        word = tok
        if len(word) >= min_len and word.isascii() and word.isalpha() and word.islower() and word not in excluded and word not in seen:
            seen.add(word)
            out.append(word)
            if len(out) >= limit:
                break
    return out


# ================================================================================================
# whole-model helpers (used by the CLI and bench/bias_cost.py)
# ================================================================================================
STATIC_SUFFIXES = (".txt", ".vec")


def open_encoder(model: str | Path, **embedder_options: Any) -> Any:
    """A word-vector text file (``.txt``/``.vec``) as :class:`StaticVectors`, anything else as an Embedder."""
    p = Path(model)
    if p.suffix.lower() in STATIC_SUFFIXES and p.is_file():
        if any(v is not None for v in embedder_options.values()):
            raise ConfigError("pooling/attention options apply to embedders, not to a word-vector file")
        return StaticVectors.from_file(p)
    from embedlab.models import Embedder

    return Embedder.from_pretrained(model, **{k: v for k, v in embedder_options.items() if v is not None})


def neutral_words(lists: dict[str, Any], encoder: Any | None = None) -> list[str]:
    """The professions that are not gender-specific (DirectBias's N), as the encoder will see them."""
    specific = {w.lower() for w in lists["gender_specific_full"]}
    words = [w for w in lists["professions"] if w.lower() not in specific]
    if encoder is not None and hasattr(encoder, "has"):
        return [w for w in words if encoder.has(w)]
    return [phrase(w) for w in words]


def direction_report(encoder: Any, lists: dict[str, Any], *, k: int = 1, c: float = 1.0,
                     pairs: Sequence[tuple[str, str]] | None = None, subspace: Subspace | None = None) -> dict[str, Any]:
    """The bias subspace of ``encoder`` (from the definitional pairs unless given) and DirectBias_c
    over the neutral professions, with the professions most aligned with the first direction."""
    skipped: list[tuple[str, str]] = []
    if subspace is None:
        pairs = pairs if pairs is not None else [tuple(p) for p in lists["definitional_pairs"]]
        subspace, skipped = bias_subspace(encoder, pairs, k)
        first = next(p for p in pairs if tuple(p) not in skipped)
        subspace = oriented(subspace, encoder, (first[0], first[1]))
    words = neutral_words(lists, encoder)
    V = encode(encoder, words)
    proj = unit(V) @ subspace.basis[0]
    order = np.argsort(proj)
    return {
        "k": subspace.k,
        "explained_variance_ratio": [round(float(x), 6) for x in subspace.explained_variance_ratio],
        "pairs_used": subspace.pairs,
        "pairs_skipped": [list(p) for p in skipped],
        "neutral_words": len(words),
        "c": c,
        "direct_bias": direct_bias(V, subspace, c),
        # a principal component's sign is arbitrary: it is oriented so that the first pair's first word
        # (woman, in debiaswe's list) is on the positive side
        "most_positive": [words[i] for i in order[::-1][:10]],
        "most_negative": [words[i] for i in order[:10]],
        "subspace": subspace,
    }


def oriented(subspace: Subspace, encoder: Any, pair: tuple[str, str]) -> Subspace:
    """The same subspace with its first direction pointing from ``pair[1]`` to ``pair[0]``."""
    a, b = encode(encoder, [phrase(pair[0]), phrase(pair[1])] if not hasattr(encoder, "has") else list(pair))
    if float((unit(a[None]) - unit(b[None]))[0] @ subspace.basis[0]) < 0:
        basis = subspace.basis.copy()
        basis[0] = -basis[0]
        return Subspace(basis, subspace.explained_variance_ratio, subspace.pairs)
    return subspace


def results_table(results: dict[str, Sequence[WeatResult]]) -> list[dict[str, Any]]:
    """One row per (mode, test) with each model's d and p side by side."""
    models = list(results)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for m in models:
        for r in results[m]:
            row = rows.setdefault((r.mode, r.test), {"mode": r.mode, "test": r.test, "title": r.title})
            row[m] = {"d": r.effect_size, "p": r.p_value, "p_method": r.p_method, "permutations": r.permutations,
                      "n": r.sizes["X"]}
    return list(rows.values())


def plot_effect_sizes(results: dict[str, Sequence[WeatResult]], path: str | Path, title: str = "") -> None:
    """Bars of each test's effect size per model, labelled with its p-value (atomic PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embedlab.io import atomic_path

    rows = results_table(results)
    models = list(results)
    labels = [f"{r['mode'].upper()} {r['test']}" for r in rows]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(min(14, max(6, 0.3 * len(rows) * len(models) + 2)), 4.5))
    for j, m in enumerate(models):
        xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(rows))]
        ds = [r[m]["d"] if m in r else np.nan for r in rows]
        bars = ax.bar(xs, ds, width, label=m)
        for x, r, bar in zip(xs, rows, bars):
            if m in r:
                p = r[m]["p"]
                h = bar.get_height()
                ax.annotate(f"p={p:.2g}" + ("*" if p < 0.05 else ""), (x, h), ha="center",
                            va="bottom" if h >= 0 else "top", fontsize=6, rotation=90)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("effect size d")
    ax.set_ylim(-2.2, 2.2)
    ax.set_title(title or "WEAT/SEAT effect sizes (* p < 0.05, one-sided permutation test)", fontsize=9)
    if len(models) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


__all__ = [
    "BiasTest", "ClusteringCheck", "HardDebiasReport", "PermutationResult", "StaticVectors", "Subspace", "WeatResult",
    "WordSet", "associations", "bias_subspace", "builtin_tests", "check_sizes", "cluster_alignment", "debiaswe_lists",
    "direct_bias", "indirect_bias", "effect_size", "encode", "equalise", "expand_case", "gonen_goldberg", "hard_debias", "load_tests",
    "make_test", "n_partitions", "neutralise", "permutation_p", "phrase", "read_pairs", "run_test", "run_tests",
    "seat_sentences", "seat_templates", "select_tests", "subspace_cosines", "subspace_from_pairs", "unit",
    "vocabulary_words", "weat_from_vectors", "weat_statistic", "open_encoder", "neutral_words", "direction_report",
    "oriented", "results_table", "plot_effect_sizes",
]
