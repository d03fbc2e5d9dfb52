"""GoalEx: goal-driven explainable clustering (Wang, Shang & Zhong, EMNLP 2023), reimplemented from the
paper's description (the authors' code has no licence and was not used).

The propose-assign-select loop:

1. **Propose.** An LLM sees the goal and a sample of texts and writes candidate explanations, short
   predicates over one text ("asks about a card that has not arrived"), as ``- "..."`` lines. Calls after
   the first see two explanations drawn at random (seeded) from the first call's, or, in later rounds, from
   the usable ones so far (the paper's "similar granularity" examples). Without an LLM able to propose, the
   **extractive proposer** (``proposer="extractive"``, :mod:`embedlab.analysis.goalex_extractive`; not the
   paper's method) builds them from the c-TF-IDF terms of embedding groups; such runs are named
   ``extractive-pas``.
2. **Assign.** Every (text, explanation) pair gets a calibrated score, and a pair holds when its calibrated
   score exceeds the threshold (strictly, ``>``: a text scoring exactly like the content-free text does not hold):

   - ``assigner="llm"`` (the paper's): the LLM's log-odds log P(yes) - log P(no), minus the same log-odds for
     a content-free text ("N/A") and that explanation (contextual calibration); threshold 0 by default;
   - ``assigner="embedding"`` (a deviation): the cosine between the text's and the explanation's embeddings,
     standardised per explanation over the corpus (minus its mean, over its standard deviation), so the scale
     is calibrated per corpus; the default threshold is the (1 - 1/K) quantile of the round's standardised
     scores (``threshold="quantile"``: on average an explanation holds for n/K texts), or per explanation by
     Otsu's rule (``"otsu"``, :func:`otsu_threshold`), not a constant.

   Explanations that hold for more than ``max_cluster_fraction`` of the corpus, or for fewer than
   ``min_cluster_size`` texts, are pruned.
3. **Select.** The paper's integer programme picks K explanations: binary s_j, cost z_i >= 0 per text with
   z_i >= lambda_overlap (y_i - 1) and z_i >= lambda_miss (1 - y_i), y_i = sum_j A_ij s_j, minimise sum_i z_i
   subject to sum_j s_j = K (solved by ``scipy.optimize.milp``). With fewer than K usable explanations it is
   infeasible; it is then relaxed to sum_j s_j <= K and the result says so.
4. **Iterate.** New explanations are proposed from the texts no selected explanation covers (padded with
   covered ones up to the sample size), assigned over the whole corpus, and selection is solved again over
   all of them, for up to ``rounds`` rounds.

Each text finally goes to the selected explanation with its highest calibrated score among those that hold
for it (``labels``; a text none holds for is unassigned, ``-1``), and, as the paper's final assignment does,
every text also goes to its best selected explanation whether or not it holds (``forced_labels``). The paper
asks the LLM to pick one with a multiple-choice prompt instead.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from embedlab.analysis.goalex_llm import LLM, Turn
from embedlab.errors import ConfigError, EmptyInput, InputError
from embedlab.progress import ShowProgress
from embedlab.validation import cluster_count, finite_float, positive_int

log = logging.getLogger(__name__)

UNASSIGNED = -1
#: the default threshold per assigner: a number; "quantile" (the (1 - 1/K) quantile of a round's calibrated
#: scores, so an explanation holds on average for n/K texts, as a cluster of K should); or "otsu" (chosen per
#: explanation from its own score distribution by :func:`otsu_threshold`)
DEFAULT_THRESHOLDS: dict[str, float | str] = {"llm": 0.0, "embedding": "quantile"}


def load_prompts(path: str | Path | None = None) -> dict[str, Any]:
    """The prompt templates: ``goalex_prompts.toml`` shipped with embedlab, or a user file of the same shape."""
    try:
        if path is None:
            raw = resources.files("embedlab.analysis").joinpath("goalex_prompts.toml").read_text(encoding="utf-8")
        else:
            raw = Path(path).read_text(encoding="utf-8")
        prompts = tomllib.loads(raw)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"GoalEx prompts file {path or 'goalex_prompts.toml'}: {exc}") from None
    for section, keys in (("propose", ("system", "user", "examples", "sample")), ("assign", ("system", "user"))):
        for key in keys:
            if not isinstance(prompts.get(section, {}).get(key), str):
                raise ConfigError(f"GoalEx prompts file {path or 'goalex_prompts.toml'}: missing [{section}] {key}")
    return prompts


# --- parsing ----------------------------------------------------------------------------------------------

_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*(.+?)\s*$")


def parse_explanations(answer: str, max_words: int = 25) -> list[str]:
    """Read ``- "predicate"`` lines (also ``*``, bullets and ``1.`` numbering, quoted or not); drops empty,
    over-long and duplicate entries, keeping the order."""
    found: list[str] = []
    seen: set[str] = set()
    for line in answer.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        text = m.group(1).strip().strip("\"\u201c\u201d'").strip().rstrip(".,;").strip()
        text = re.sub(r"\s+", " ", text)
        words = text.split()
        if not words or len(words) > max_words or len(text) < 3:
            continue
        key = normalise(text)
        if key not in seen:
            seen.add(key)
            found.append(text)
    return found


def normalise(explanation: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", explanation.lower()).strip()


def copied_text(explanation: str, texts: Sequence[str], min_jaccard: float = 0.7) -> int | None:
    """The index of a text the explanation (nearly) copies (word-set Jaccard >= ``min_jaccard``), else None:
    a copied text is an example, not a predicate (small proposers often do this)."""
    words = set(normalise(explanation).split())
    if not words:
        return None
    for i, t in enumerate(texts):
        other = set(normalise(t).split())
        if other and len(words & other) / len(words | other) >= min_jaccard:
            return i
    return None


def _clip(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0] + " …"


# --- the integer programme --------------------------------------------------------------------------------


@dataclass
class Selection:
    chosen: list[int]  # column indices of A
    objective: float
    relaxed: str | None = None  # why the programme was relaxed, if it was


def ilp_cost(A: np.ndarray, chosen: Sequence[int], lambda_overlap: float = 0.5, lambda_miss: float = 1.0) -> float:
    """The programme's objective for a given choice: sum_i max(0, l_o (y_i - 1), l_m (1 - y_i))."""
    y = A[:, list(chosen)].sum(1) if len(chosen) else np.zeros(A.shape[0])
    return float(np.maximum(0, np.maximum(lambda_overlap * (y - 1), lambda_miss * (1 - y))).sum())


def select_ilp(
    A: np.ndarray, k: int | None, *, lambda_overlap: float = 0.5, lambda_miss: float = 1.0, time_limit: float = 60.0
) -> Selection:
    """Solve the GoalEx selection programme with HiGHS (``scipy.optimize.milp``).

    Variables: s_j in {0,1} (J explanations), then z_i >= 0 (n texts). With ``k``: minimise sum z subject
    to sum s = k; without: minimise sum z + sum s (each cluster costs 1, the paper's rule). When the
    programme is infeasible (fewer than k columns), sum s = k is relaxed to sum s <= k."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    A = np.asarray(A, dtype=float)
    n, J = A.shape
    if J == 0:
        return Selection([], float(lambda_miss * n), "no candidate explanation to select from" if k else None)
    c = np.concatenate([np.zeros(J) if k else np.ones(J), np.ones(n)])
    eye = np.eye(n)
    # z_i - l_o * A_i s >= -l_o   and   z_i + l_m * A_i s >= l_m
    rows = [
        LinearConstraint(np.hstack([-lambda_overlap * A, eye]), -lambda_overlap, np.inf),
        LinearConstraint(np.hstack([lambda_miss * A, eye]), lambda_miss, np.inf),
    ]
    integrality = np.concatenate([np.ones(J), np.zeros(n)])
    bounds = Bounds(np.zeros(J + n), np.concatenate([np.ones(J), np.full(n, np.inf)]))
    relaxed = None
    if k:
        if k > J:
            relaxed = (
                f"the selection programme is infeasible (K={k} but only {J} usable explanation(s)); "
                f"relaxed to at most {k}, selected all {J}"
            )
            cons = LinearConstraint(np.concatenate([np.ones(J), np.zeros(n)])[None, :], 0, k)
        else:
            cons = LinearConstraint(np.concatenate([np.ones(J), np.zeros(n)])[None, :], k, k)
        rows.append(cons)
    res = milp(c, constraints=rows, integrality=integrality, bounds=bounds, options={"time_limit": time_limit})
    if res.x is None:
        raise ConfigError(f"the selection programme could not be solved: {res.message}")
    chosen = [j for j in range(J) if res.x[j] > 0.5]
    if res.status == 1:
        relaxed = (
            relaxed + "; " if relaxed else ""
        ) + f"the solver stopped at its {time_limit:.0f} s limit (best found kept)"
    return Selection(chosen, ilp_cost(A, chosen, lambda_overlap, lambda_miss) + (0 if k else len(chosen)), relaxed)


# --- assigners --------------------------------------------------------------------------------------------


class LLMAssigner:
    """Scores (text, explanation) pairs by the LLM's yes/no log-odds, retrying unreadable answers."""

    kind = "llm"

    def __init__(self, llm: LLM, prompts: dict[str, Any], *, max_text_chars: int = 400, max_retries: int = 2) -> None:
        self.llm = llm
        self.prompts = prompts
        self.max_text_chars = max_text_chars
        self.max_retries = max_retries
        self.skipped: list[tuple[str, str]] = []

    def _turn(self, text: str, explanation: str) -> Turn:
        p = self.prompts["assign"]
        return p["system"], p["user"].format(explanation=explanation, text=_clip(text, self.max_text_chars))

    def score(self, texts: Sequence[str], explanations: Sequence[str]) -> np.ndarray:
        """An (n, J) matrix of log-odds; unreadable answers after the retries count as -inf (No) and are recorded."""
        pairs = [(i, j) for j in range(len(explanations)) for i in range(len(texts))]
        turns = [self._turn(texts[i], explanations[j]) for i, j in pairs]
        answers = self.llm.yes_no(turns)
        for _ in range(self.max_retries):
            bad = [t for t, a in enumerate(answers) if a is None]
            if not bad:
                break
            again = self.llm.yes_no([turns[t] for t in bad])
            for t, a in zip(bad, again):
                answers[t] = a
        S = np.full((len(texts), len(explanations)), -np.inf)
        for (i, j), a in zip(pairs, answers):
            if a is None:
                self.skipped.append((texts[i], explanations[j]))
            else:
                S[i, j] = a
        return S


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold over a 1-d sample: the cut between two sorted neighbours that maximises the
    between-class variance w0 w1 (mu0 - mu1)^2 of the two sides, returned as their midpoint (so ``values >``
    it is the upper side). Computed exactly over every cut, not on a histogram; ``inf`` when all values are equal."""
    v = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    n = len(v)
    if n < 2 or v[0] == v[-1]:
        return float("inf")
    csum = np.cumsum(v)
    s = np.arange(1, n)  # the lower side holds v[:s]
    mu0 = csum[s - 1] / s
    mu1 = (csum[-1] - csum[s - 1]) / (n - s)
    between = (s / n) * (1 - s / n) * (mu0 - mu1) ** 2
    between[v[s - 1] == v[s]] = -1.0  # a cut must fall between two different values
    best = int(np.argmax(between))
    return float((v[best] + v[best + 1]) / 2)


class EmbeddingAssigner:
    """Scores pairs by the cosine between the text's and the explanation's embeddings (not the paper's
    assigner: a fast deviation). Text embeddings are computed once. Its scores are calibrated per corpus
    (standardised per explanation), see :meth:`GoalEx.assign`."""

    kind = "embedding"

    def __init__(self, embedder: Any, text_embeddings: np.ndarray | None = None) -> None:
        self.embedder = embedder
        self.text_embeddings = text_embeddings
        self.skipped: list[tuple[str, str]] = []

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        v = np.asarray(self.embedder.encode(list(texts), show_progress=False), dtype=np.float64)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def score(self, texts: Sequence[str], explanations: Sequence[str]) -> np.ndarray:
        if self.text_embeddings is not None and len(texts) == len(self.text_embeddings) and len(texts) > 1:
            T = np.asarray(self.text_embeddings, dtype=np.float64)
            T = T / np.maximum(np.linalg.norm(T, axis=1, keepdims=True), 1e-12)
        else:
            T = self._encode(texts)
        return T @ self._encode(explanations).T


# --- the loop -----------------------------------------------------------------------------------------------


@dataclass
class GoalExConfig:
    k: int
    goal: str
    threshold: float | str | None = None  # None: DEFAULT_THRESHOLDS[assigner]; "quantile"/"otsu"; holds when > it
    rounds: int = 3  # the paper: up to 5
    candidates_per_round: int | None = None  # None: max(8, 2K) in the first round, max(4, K) later
    per_call: int = 8  # explanations asked for in one proposer call (the paper: 8)
    sample_size: int = 25  # texts shown to the proposer (the paper: up to 50, as context allows)
    max_text_chars: int = 300  # each text is clipped to this in prompts
    max_cluster_fraction: float | None = None  # None: max(0.4, 1.5 / K) (the paper: 0.4)
    min_cluster_size: int = 1
    lambda_overlap: float = 0.5
    lambda_miss: float = 1.0
    stop_uncovered_fraction: float = 0.0  # stop iterating once at most this share is uncovered
    max_retries: int = 2  # unparseable proposer answers are asked again (sampled) this many times
    max_new_tokens: int = 160
    seed: int = 0

    def check(self, n: int, names: Mapping[str, str] | None = None) -> None:
        """Refuse settings that cannot run on ``n`` texts (:mod:`embedlab.validation`'s messages). ``names``
        maps a field to what the user typed for it (the CLI passes its flags: ``{"k": "--k"}``); a field
        not in it is named as the field."""
        name = {f: f for f in ("k", "rounds", "sample_size", "max_cluster_fraction")} | dict(names or {})
        if not self.goal or not self.goal.strip():
            raise InputError("the goal is empty: say what the clusters should be about, e.g. --goal 'by topic'")
        if n == 0:
            raise EmptyInput("the corpus is empty: give at least one text per cluster")
        cluster_count(self.k, n, name["k"])
        positive_int(name["rounds"], self.rounds)
        positive_int(name["sample_size"], self.sample_size)
        if self.max_cluster_fraction is not None:
            finite_float(name["max_cluster_fraction"], self.max_cluster_fraction, low=0.0, high=1.0, low_open=True)


@dataclass
class Candidate:
    explanation: str
    round: int
    scores: np.ndarray  # calibrated, (n,)
    holds: np.ndarray  # bool, (n,)
    pruned: str | None = None
    threshold: float = 0.0


@dataclass
class ClusterResult:
    """What a clustering run returns: ``labels[i]`` is text i's cluster among the explanations that hold for
    it (``-1``: none holds, unassigned); ``forced_labels[i]`` is its best selected explanation whether or not
    it holds (the paper's final assignment; ``None`` for k-means, where it equals ``labels``)."""

    method: str
    labels: np.ndarray
    explanations: list[str | None]
    goal: str | None = None
    k: int = 0
    notes: list[str] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    forced_labels: np.ndarray | None = None

    @property
    def unassigned(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.labels == UNASSIGNED)]

    @property
    def best_fit(self) -> np.ndarray:
        """Every text's cluster under the paper's protocol (each text to its best selected explanation)."""
        return self.labels if self.forced_labels is None else self.forced_labels

    def clusters(self) -> list[dict[str, Any]]:
        return [
            {
                "id": c,
                "explanation": e,
                "size": int((self.labels == c).sum()),
                "best_fit_size": int((self.best_fit == c).sum()),
                "members": [int(i) for i in np.flatnonzero(self.labels == c)],
            }
            for c, e in enumerate(self.explanations)
        ]

    def to_dict(self, texts: Sequence[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "goal": self.goal,
            "k": self.k,
            "settings": self.settings,
            "notes": self.notes,
            "clusters": self.clusters(),
            "unassigned": self.unassigned,
            "labels": [int(x) for x in self.labels],
            "best_fit_labels": [int(x) for x in self.best_fit],
            "rounds": self.rounds,
            "candidates": self.candidates,
        }
        if texts is not None:
            out["texts"] = list(texts)
        return out


class GoalEx:
    """The propose-assign-select loop. ``llm`` proposes (``proposer="llm"``, the paper's) and assigns (with
    ``assigner="llm"``); with ``proposer="extractive"`` and ``assigner="embedding"`` no LLM is needed
    (``llm=None``) and the run is named ``extractive-pas``."""

    def __init__(
        self,
        llm: LLM | None = None,
        *,
        assigner: str = "llm",
        embedder: Any = None,
        prompts: dict[str, Any] | None = None,
        show_progress: ShowProgress = False,
        proposer: Any = "llm",
    ) -> None:
        if assigner not in ("llm", "embedding"):
            raise ConfigError(f"assigner must be 'llm' or 'embedding'; got {assigner!r}")
        if assigner == "embedding" and embedder is None:
            raise ConfigError("the embedding assigner needs an embedder")
        if proposer == "extractive":
            if embedder is None:
                raise ConfigError("the extractive proposer needs an embedder")
            from embedlab.analysis.goalex_extractive import ExtractiveProposer

            proposer = ExtractiveProposer(embedder)
        elif proposer != "llm" and not hasattr(proposer, "propose"):
            raise ConfigError(f"proposer must be 'llm', 'extractive' or a proposer object; got {proposer!r}")
        if llm is None and (proposer == "llm" or assigner == "llm"):
            raise ConfigError("the LLM proposer and the LLM assigner need an LLM")
        self.llm = llm
        self.proposer = proposer
        self.proposer_kind = "llm" if proposer == "llm" else getattr(proposer, "kind", "custom")
        self.assigner_kind = assigner
        self.embedder = embedder
        self.prompts = prompts or load_prompts()
        self.show_progress = show_progress
        self.proposal_log: list[dict[str, Any]] = []  # every proposer call: sample indices, answer, parsed

    @property
    def method(self) -> str:
        return f"goalex-{self.assigner_kind}" if self.proposer_kind == "llm" else f"{self.proposer_kind}-pas"

    # -- propose
    def _propose_turn(
        self, goal: str, texts: Sequence[str], sample: Sequence[int], n: int, examples: Sequence[str], cfg: GoalExConfig
    ) -> Turn:
        p = self.prompts["propose"]
        samples = "\n".join(
            p["sample"].format(i=r + 1, text=_clip(texts[i], cfg.max_text_chars)) for r, i in enumerate(sample)
        )
        ex = p["examples"].format(examples="; ".join(f'"{e}"' for e in examples)) if examples else ""
        return p["system"], p["user"].format(goal=goal.strip(), samples=samples, n=n, examples=ex)

    def propose(
        self,
        goal: str,
        texts: Sequence[str],
        sample: Sequence[int],
        want: int,
        cfg: GoalExConfig,
        examples: Sequence[str] = (),
        round_no: int = 0,
    ) -> tuple[list[str], list[str]]:
        """Candidate explanations from ``ceil(want / per_call)`` LLM calls; returns (explanations, problems).

        Each call shows two example explanations drawn at random (seeded, per call) from ``examples`` (later
        rounds: the usable explanations so far) or, without them, from the first call's answer (calls after
        the first); the first call of the first round shows none."""
        assert self.llm is not None
        calls = max(1, -(-want // cfg.per_call))
        rng = np.random.default_rng(cfg.seed + 1000 * round_no)
        found: list[str] = []
        problems: list[str] = []
        seen = {normalise(e) for e in examples}
        first: list[str] = []
        for c in range(calls):
            # later calls see a reshuffled sample; every call draws its own two examples
            order = list(sample) if c == 0 else list(rng.permutation(sample))
            pool = list(examples) or first
            shown = [str(e) for e in rng.choice(pool, size=min(2, len(pool)), replace=False)] if pool else []
            turn = self._propose_turn(goal, texts, order, min(cfg.per_call, want), shown, cfg)
            parsed: list[str] = []
            for attempt in range(cfg.max_retries + 1):
                temperature = 0.0 if attempt == 0 else 0.7
                answer = self.llm.generate(
                    [turn], max_new_tokens=cfg.max_new_tokens, temperature=temperature, seed=cfg.seed + attempt
                )[0]
                parsed = parse_explanations(answer)
                self.proposal_log.append(
                    {
                        "round": round_no,
                        "call": c,
                        "attempt": attempt,
                        "sample": [int(i) for i in order],
                        "examples": shown,
                        "answer": answer,
                        "parsed": parsed,
                    }
                )
                if parsed:
                    break
            if not parsed:
                problems.append(
                    f"round {round_no} call {c}: the proposer's answer had no '- \"...\"' line after "
                    f"{cfg.max_retries + 1} tries; skipped"
                )
                continue
            if c == 0:
                first = parsed
            for e in parsed:
                if normalise(e) not in seen:
                    seen.add(normalise(e))
                    found.append(e)
        return found, problems

    # -- assign
    def _assigner(self, texts: Sequence[str], cfg: GoalExConfig, text_embeddings: np.ndarray | None) -> Any:
        if self.assigner_kind == "llm":
            assert self.llm is not None
            return LLMAssigner(self.llm, self.prompts, max_text_chars=cfg.max_text_chars, max_retries=cfg.max_retries)
        return EmbeddingAssigner(self.embedder, text_embeddings)

    def assign(self, assigner: Any, texts: Sequence[str], explanations: Sequence[str]) -> np.ndarray:
        """Calibrated scores, (n, J). LLM assigner: the raw log-odds minus the content-free text's log-odds for
        the same explanation. Embedding assigner: the cosine standardised per explanation over the corpus
        (minus its mean, over its standard deviation: a per-corpus calibration)."""
        raw = assigner.score(list(texts), explanations)
        if getattr(assigner, "kind", "llm") == "embedding":
            mean = raw.mean(0, keepdims=True)
            std = raw.std(0, keepdims=True)
            return np.where(std > 1e-12, (raw - mean) / np.maximum(std, 1e-12), 0.0)
        null = self.prompts.get("assign", {}).get("calibration", {}).get("null_text", "N/A")
        base = assigner.score([null], explanations)[0] if len(texts) else np.zeros(len(explanations))
        base = np.where(np.isfinite(base), base, 0.0)
        return raw - base[None, :]

    # -- the loop
    def fit(self, texts: Sequence[str], cfg: GoalExConfig, text_embeddings: np.ndarray | None = None) -> ClusterResult:
        texts = list(texts)
        cfg.check(len(texts))
        n, k = len(texts), cfg.k
        tau: float | str = DEFAULT_THRESHOLDS[self.assigner_kind] if cfg.threshold is None else cfg.threshold
        max_frac = cfg.max_cluster_fraction if cfg.max_cluster_fraction is not None else max(0.4, min(1.0, 1.5 / k))
        rng = np.random.default_rng(cfg.seed)
        if self.proposer_kind != "llm" and text_embeddings is None:
            text_embeddings = np.asarray(self.embedder.encode(texts, show_progress=False))
        assigner = self._assigner(texts, cfg, text_embeddings)
        cands: list[Candidate] = []
        notes: list[str] = []
        rounds: list[dict[str, Any]] = []
        selection = Selection([], float(n))
        usable: list[int] = []
        covered = np.zeros(n, dtype=bool)
        for r in range(cfg.rounds):
            uncovered = np.flatnonzero(~covered)
            if r > 0 and len(uncovered) <= cfg.stop_uncovered_fraction * n:
                break
            if r > 0 and len(uncovered) == 0:
                break
            want = cfg.candidates_per_round or (max(8, 2 * k) if r == 0 else max(4, k))
            if self.proposer_kind != "llm":
                # no context limit: the proposer sees every text no selected explanation covers
                sample = [int(i) for i in uncovered]
                new = self.proposer.propose(cfg.goal, texts, sample, k, text_embeddings, round_no=r, seed=cfg.seed)
                problems = [] if new else [f"round {r}: the {self.proposer_kind} proposer found no distinctive terms"]
            else:
                # the sample: uncovered texts first (all texts in round 0), padded with covered ones
                pool = rng.permutation(uncovered)
                sample = list(pool[: cfg.sample_size])
                if len(sample) < min(cfg.sample_size, n):
                    rest = rng.permutation(np.flatnonzero(covered))
                    sample += list(rest[: min(cfg.sample_size, n) - len(sample)])
                examples = [cands[j].explanation for j in usable] if r > 0 else []
                new, problems = self.propose(cfg.goal, texts, sample, want, cfg, examples=examples, round_no=r)
            notes += problems
            known = {normalise(c.explanation) for c in cands}
            new = [e for e in new if normalise(e) not in known]
            if new:
                S = self.assign(assigner, texts, new)
                pooled = (
                    float(np.quantile(S[np.isfinite(S)], 1 - 1 / k))
                    if tau == "quantile" and np.isfinite(S).any()
                    else 0.0
                )
                for j, e in enumerate(new):
                    t = otsu_threshold(S[:, j]) if tau == "otsu" else pooled if tau == "quantile" else float(tau)
                    holds = S[:, j] > t
                    cnt = int(holds.sum())
                    pruned = None
                    if cnt < cfg.min_cluster_size:
                        pruned = f"holds for {cnt} text(s), fewer than {cfg.min_cluster_size}"
                    elif cnt > max_frac * n:
                        pruned = f"holds for {cnt}/{n} texts, more than {max_frac:.0%}"
                    cands.append(Candidate(e, r, S[:, j], holds, pruned, t))
            usable = [j for j, c in enumerate(cands) if c.pruned is None]
            A = np.stack([cands[j].holds for j in usable], 1).astype(float) if usable else np.zeros((n, 0))
            sel = select_ilp(A, k, lambda_overlap=cfg.lambda_overlap, lambda_miss=cfg.lambda_miss)
            selection = Selection([usable[j] for j in sel.chosen], sel.objective, sel.relaxed)
            covered = A[:, sel.chosen].sum(1) > 0 if sel.chosen else np.zeros(n, dtype=bool)
            rounds.append(
                {
                    "round": r,
                    "sample": [int(i) for i in sample],
                    "sample_uncovered": int(min(len(uncovered), len(sample))),
                    "proposed": new,
                    "usable": len(usable),
                    "selected": [cands[j].explanation for j in selection.chosen],
                    "objective": selection.objective,
                    "covered": int(covered.sum()),
                    "relaxed": sel.relaxed,
                }
            )
            if not new and r > 0:
                notes.append(f"round {r}: the proposer gave no new explanation; stopped")
                break
        if selection.relaxed:
            notes.append(selection.relaxed)
        chosen = selection.chosen
        labels = np.full(n, UNASSIGNED)
        forced = np.full(n, UNASSIGNED)
        if chosen:
            raw = np.stack([cands[j].scores for j in chosen], 1)
            forced = np.where(np.isfinite(raw).any(1), np.nan_to_num(raw, neginf=-1e300).argmax(1), UNASSIGNED)
            scores = np.stack([np.where(cands[j].holds, cands[j].scores, -np.inf) for j in chosen], 1)
            best = scores.argmax(1)
            ok = np.isfinite(scores.max(1))
            labels[ok] = best[ok]
        skipped = getattr(assigner, "skipped", [])
        if skipped:
            notes.append(
                f"{len(skipped)} (text, explanation) answer(s) unreadable after {cfg.max_retries} retries: "
                "skipped (counted as No)"
            )
        if len(chosen) < k and not selection.relaxed:
            notes.append(f"only {len(chosen)} explanation(s) selected for K={k}")
        settings = {
            "proposer": self.proposer_kind,
            "assigner": self.assigner_kind,
            "threshold": {"otsu": "otsu per explanation", "quantile": "(1 - 1/K) quantile per round"}.get(
                str(tau), tau
            ),
            "max_cluster_fraction": max_frac,
            "rounds": cfg.rounds,
            "sample_size": cfg.sample_size,
            "per_call": cfg.per_call,
            "lambda_overlap": cfg.lambda_overlap,
            "lambda_miss": cfg.lambda_miss,
            "seed": cfg.seed,
            "llm": getattr(self.llm, "name", None),
            "llm_fingerprint": getattr(self.llm, "fingerprint", None),
            "calibration": (
                "cosine standardised per explanation over the corpus"
                if self.assigner_kind == "embedding"
                else "score minus the content-free text's score, per explanation"
            ),
        }
        if hasattr(self.proposer, "settings"):
            settings["proposer_settings"] = self.proposer.settings()
        cand_out = [
            {
                "explanation": c.explanation,
                "round": c.round,
                "holds_for": int(c.holds.sum()),
                "pruned": c.pruned,
                "threshold": c.threshold,
                "selected": j in chosen,
                "copies_text": copied_text(c.explanation, texts),
            }
            for j, c in enumerate(cands)
        ]
        copies = sum(c["copies_text"] is not None for c in cand_out)
        if copies:
            notes.append(
                f"{copies} of {len(cand_out)} proposed explanation(s) copy a text of the corpus instead of "
                "stating a property (kept; see candidates[].copies_text)"
            )
        return ClusterResult(
            method=self.method,
            labels=labels,
            explanations=[cands[j].explanation for j in chosen],
            goal=cfg.goal,
            k=k,
            notes=notes,
            rounds=rounds,
            candidates=cand_out,
            settings=settings,
            forced_labels=forced,
        )


def kmeans_clusters(embeddings: np.ndarray, k: int, *, seed: int = 0) -> ClusterResult:
    """The unexplained baseline: k-means (scikit-learn, 10 restarts) on L2-normalised embeddings."""
    from sklearn.cluster import KMeans

    X = np.asarray(embeddings, dtype=np.float64)
    if len(X) == 0:
        raise EmptyInput("the corpus is empty: give at least one text per cluster")
    cluster_count(k, len(X), "k")
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:  # kept out of the console: said as a note instead
        warnings.simplefilter("always", ConvergenceWarning)
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(X)
    notes = []
    found = len(np.unique(labels))
    if found < k or any(issubclass(w.category, ConvergenceWarning) for w in caught):
        distinct = len(np.unique(X.round(6), axis=0))
        notes.append(
            f"k-means found {found} distinct cluster(s) for K={k}: the corpus has {distinct} distinct embedding(s)"
        )
    return ClusterResult(
        method="kmeans",
        labels=labels,
        explanations=[None] * k,
        k=k,
        notes=notes,
        settings={"n_init": 10, "seed": seed, "normalised": True},
    )


# --- scores --------------------------------------------------------------------------------------------------


def _matched(true: Sequence[Any], pred: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true class index per text, the true class index each text's predicted cluster is matched to or -1,
    the classes). The one-to-one matching maximises the texts on the diagonal (Hungarian,
    ``scipy.optimize.linear_sum_assignment``) over the predicted clusters other than ``UNASSIGNED``; unassigned
    texts and clusters left without a partner (more clusters than classes) are matched to nothing."""
    from scipy.optimize import linear_sum_assignment

    classes, t = np.unique(np.asarray(true), return_inverse=True)
    pred = np.asarray(pred)
    clusters = np.unique(pred[pred != UNASSIGNED])
    mapped = np.full(len(pred), -1)
    if len(clusters):
        p = np.searchsorted(clusters, pred)
        M = np.zeros((len(clusters), len(classes)))
        ok = pred != UNASSIGNED
        np.add.at(M, (p[ok], t[ok]), 1)
        rows, cols = linear_sum_assignment(-M)
        to_class = np.full(len(clusters), -1)
        to_class[rows] = cols
        mapped[ok] = to_class[p[ok]]
    return t, mapped, classes


def hungarian_accuracy(true: Sequence[Any], pred: Sequence[int]) -> float:
    """Accuracy after the best one-to-one matching of predicted clusters to true classes; unassigned texts
    (``-1``) are wrong (they are not a cluster and match no class)."""
    t, mapped, _ = _matched(true, pred)
    return float((mapped == t).mean()) if len(t) else 0.0


def macro_f1(true: Sequence[Any], pred: Sequence[int]) -> float:
    """GoalEx's macro-F1: predicted clusters are mapped to true classes by the one-to-one Hungarian matching,
    then F1 is averaged over the true classes (``sklearn.metrics.f1_score(average="macro")``). Unassigned texts
    and unmatched clusters count as predicting no class (false negatives of their true class)."""
    from sklearn.metrics import f1_score

    t, mapped, classes = _matched(true, pred)
    return float(f1_score(t, mapped, labels=np.arange(len(classes)), average="macro", zero_division=0))


def strict_partition(pred: Sequence[int]) -> np.ndarray:
    """``pred`` with every unassigned text in a cluster of its own, so that in pair-counting scores (ARI) it is
    grouped with no other text: its pairs with its own class all count as misses."""
    pred = np.asarray(pred).copy()
    un = np.flatnonzero(pred == UNASSIGNED)
    start = (pred.max() + 1) if len(pred) else 0
    pred[un] = start + np.arange(len(un))
    return pred


def cluster_scores(true: Sequence[Any], pred: Sequence[int], best_fit: Sequence[int] | None = None) -> dict[str, float]:
    """Scores under two protocols.

    - **paper** (GoalEx's evaluation, where the final assignment gives every text a cluster): ``best_fit``, each
      text's best selected explanation (k-means: ``pred``); ARI, NMI, Hungarian accuracy and macro-F1.
    - **strict**: ``pred``, where unassigned texts (``-1``) count as wrong: they match no class in accuracy and
      macro-F1, and each is a cluster of its own in ARI (:func:`strict_partition`). NMI is not given strictly:
      singletons would inflate it, and pooling them into one group lets that group carry information.

    The unprefixed ``ari``/``nmi``/``accuracy``/``macro_f1`` are the paper protocol's; ``unassigned`` is the share
    of ``pred`` left unassigned."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred = np.asarray(pred)
    fit = pred if best_fit is None else np.asarray(best_fit)
    if len(fit) != len(pred) or len(pred) != len(true):
        raise InputError(f"{len(true)} true labels but {len(pred)} predictions")
    return {
        "ari": float(adjusted_rand_score(true, fit)),
        "nmi": float(normalized_mutual_info_score(true, fit)),
        "accuracy": hungarian_accuracy(true, fit),
        "macro_f1": macro_f1(true, fit),
        "strict_ari": float(adjusted_rand_score(true, strict_partition(pred))),
        "strict_accuracy": hungarian_accuracy(true, pred),
        "strict_macro_f1": macro_f1(true, pred),
        "unassigned": float((pred == UNASSIGNED).mean()),
    }


# --- the sample corpus and reports ---------------------------------------------------------------------------


def sample_corpus_path() -> Path:
    """The small corpus shipped with embedlab (customer messages to a bank, written for embedlab)."""
    return Path(str(resources.files("embedlab.data").joinpath("goalex_sample.txt")))


SAMPLE_GOAL = "cluster these customer messages by what the customer wants"
SAMPLE_K = 4


def write_outputs(
    result: ClusterResult,
    texts: Sequence[str],
    out_dir: str | Path,
    embeddings: np.ndarray | None = None,
    *,
    examples: int = 5,
) -> dict[str, Path]:
    """``clusters.json``, ``report.md`` (each cluster's explanation, size and ``examples`` texts) and, with
    embeddings, ``clusters.png`` (a 2-D PCA projection coloured by cluster and labelled with the explanations)."""
    from embedlab.io import atomic_path, write_json

    out_dir = Path(out_dir)
    paths = {"json": out_dir / "clusters.json", "markdown": out_dir / "report.md"}
    write_json(paths["json"], result.to_dict(texts))
    lines = [f"# Clusters: {result.method}", ""]
    if result.goal:
        lines += [f"Goal: {result.goal}", ""]
    lines += [f"{len(texts)} texts, K = {result.k}; {len(result.unassigned)} unassigned.", ""]
    for note in result.notes:
        lines.append(f"> note: {note}")
    if result.notes:
        lines.append("")
    for c in result.clusters():
        name = c["explanation"] or f"cluster {c['id']}"
        lines += [f"## {c['id']}. {name} ({c['size']} texts)", ""]
        lines += [f"- {_clip(texts[i], 300)}" for i in c["members"][:examples]] or ["(empty)"]
        lines.append("")
    if result.unassigned:
        lines += [f"## Unassigned ({len(result.unassigned)} texts)", ""]
        lines += [f"- {_clip(texts[i], 300)}" for i in result.unassigned[:examples]]
        lines.append("")
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    if embeddings is not None and len(texts) >= 2:
        paths["png"] = out_dir / "clusters.png"
        plot_clusters(result, np.asarray(embeddings), paths["png"])
    return paths


def plot_clusters(result: ClusterResult, embeddings: np.ndarray, path: str | Path, title: str | None = None) -> None:
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    from embedlab.io import atomic_path

    X = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    P = PCA(n_components=2, random_state=0).fit_transform(X) if X.shape[1] >= 2 else np.hstack([X, np.zeros_like(X)])
    fig, ax = plt.subplots(figsize=(9, 7))
    cmap = plt.get_cmap("tab20")
    un = result.labels == UNASSIGNED
    if un.any():
        ax.scatter(P[un, 0], P[un, 1], c="lightgrey", s=14, label=f"unassigned ({int(un.sum())})")
    for c in result.clusters():
        m = result.labels == c["id"]
        if not m.any():
            continue
        name = c["explanation"] or f"cluster {c['id']}"
        ax.scatter(
            P[m, 0], P[m, 1], s=18, color=cmap(c["id"] % 20), label=f"{c['id']}: {_clip(name, 60)} ({c['size']})"
        )
        cx, cy = P[m].mean(0)
        ax.annotate(
            "\n".join(textwrap.wrap(_clip(name, 80), 28)),
            (cx, cy),
            fontsize=8,
            ha="center",
            bbox=dict(boxstyle="round", fc="white", alpha=0.8, ec=cmap(c["id"] % 20)),
        )
    ax.set_title(title or f"{result.method}: {result.goal or ''}"[:100])
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
