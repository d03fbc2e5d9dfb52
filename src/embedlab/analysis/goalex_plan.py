"""Which GoalEx proposer and assigner a clustering run uses, decided before anything heavy loads.

The paper's LLM proposer needs an LLM able to write general predicates (GoalEx used GPT-3.5/4). The packaged
SmolLM2-135M is not: measured in docs/goalex.md, it copies texts or the prompt's demo instead. So:

- ``--llm-endpoint`` given: the paper's LLM proposer (and the LLM assigner), always;
- a local LLM with at least :data:`MIN_PROPOSER_PARAMS` parameters: the LLM proposer too;
- a smaller local LLM (or an unknown size that is one of the known-small aliases): the **extractive proposer**
  (:mod:`embedlab.analysis.goalex_extractive`, a deviation) with the embedding assigner, and the local LLM is
  not loaded at all. ``proposer="llm"`` forces the LLM proposer anyway (with a warning line).

:func:`plan_cluster` returns the decision and the lines to print before the run; :func:`estimate_seconds` a
rough duration for the LLM paths, which are slow on a CPU.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from embedlab.errors import ConfigError

#: below this many parameters a local LLM is judged too small to propose explanations
MIN_PROPOSER_PARAMS = 1_000_000_000
#: local aliases known to be too small (used when the weights cannot be counted)
SMALL_ALIASES = {"smollm2-135m": 135_000_000}
PROPOSERS = ("auto", "llm", "extractive")
ASSIGNERS = ("auto", "llm", "embedding")


@dataclass
class ClusterPlan:
    """The proposer and assigner a run uses, whether the LLM must be loaded, and what to tell the user."""

    proposer: str  # "llm" | "extractive"
    assigner: str  # "llm" | "embedding"
    load_llm: bool
    llm_params: int | None = None
    messages: list[str] = field(default_factory=list)


def _safetensors_params(path: Path) -> int:
    """Number of parameters in a .safetensors file, read from its JSON header (no tensor is loaded)."""
    with path.open("rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in info["shape"]:
            count *= int(d)
        total += count
    return total


def count_parameters(llm: str) -> int | None:
    """Parameters of a local causal LM (alias, .gguf file or directory), counted from its safetensors headers;
    None when they cannot be counted without loading it (no safetensors, a hub id, an unknown name)."""
    try:
        from embedlab.models.backbone import resolve_source

        target, _ = resolve_source(llm)
    except Exception:  # noqa: BLE001 - an unknown name is reported later, when the LLM is loaded
        return SMALL_ALIASES.get(llm)
    path = Path(target)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not files:
        return SMALL_ALIASES.get(llm)
    try:
        return sum(_safetensors_params(f) for f in files)
    except (OSError, ValueError, KeyError, struct.error):
        return SMALL_ALIASES.get(llm)


def _millions(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def plan_cluster(
    llm: str | None,
    endpoint: str | None = None,
    *,
    proposer: str = "auto",
    assigner: str = "auto",
    min_params: int = MIN_PROPOSER_PARAMS,
) -> ClusterPlan:
    """Decide the proposer and assigner of ``embedlab cluster`` (see the module docstring)."""
    if proposer not in PROPOSERS:
        raise ConfigError(f"--proposer must be one of {', '.join(PROPOSERS)}; got {proposer!r}")
    if assigner not in ASSIGNERS:
        raise ConfigError(f"--assigner must be one of {', '.join(ASSIGNERS)}; got {assigner!r}")
    messages: list[str] = []
    params = None
    if endpoint:
        chosen = "llm" if proposer == "auto" else proposer
        if chosen == "llm":
            messages.append(f"proposer: the LLM at {endpoint} (GoalEx's LLM proposer)")
    else:
        if not llm and proposer == "llm":
            raise ConfigError("--proposer llm needs --llm NAME or --llm-endpoint URL")
        params = count_parameters(llm) if llm else None
        small = params is not None and params < min_params
        if proposer == "auto":
            chosen = "extractive" if (small or not llm) else "llm"
            if small:
                messages.append(
                    f"{llm} ({_millions(params)} parameters) is too small to propose explanations "
                    f"(GoalEx used GPT-3.5/4; below {_millions(min_params)} it copies texts instead, "
                    "see docs/goalex.md)"
                )
        else:
            chosen = proposer
            if chosen == "llm" and small:
                messages.append(
                    f"warning: {llm} ({_millions(params)} parameters) is too small to propose "
                    "explanations well; proposing with it anyway (--proposer llm)"
                )
            elif chosen == "llm":
                messages.append(f"proposer: {llm} (GoalEx's LLM proposer)")
    if chosen == "extractive":
        messages.append(
            "proposer: extractive (c-TF-IDF terms of embedding groups, embedlab's offline stand-in, "
            "not the paper's LLM proposer); runs are named extractive-pas"
        )
    if assigner == "auto":
        assigner = "llm" if chosen == "llm" else "embedding"
    messages.append(
        "assigner: "
        + (
            "the LLM's yes/no log-odds (the paper's)"
            if assigner == "llm"
            else "embedding cosine, calibrated per corpus (a deviation)"
        )
    )
    load = chosen == "llm" or assigner == "llm"
    return ClusterPlan(proposer=chosen, assigner=assigner, load_llm=load, llm_params=params, messages=messages)


def estimate_seconds(plan: ClusterPlan, n_texts: int, k: int, *, rounds: int = 3, endpoint: bool = False) -> float:
    """A rough duration: LLM prompts expected (proposer calls, and n + 1 yes/no prompts per candidate with the
    LLM assigner) at 0.15 s per local yes/no prompt and 2 s per local proposer call on a 2-core CPU (measured
    with SmolLM2-135M); an endpoint is counted at 0.5 s per prompt over its 8 parallel workers; the extractive
    proposer with the embedding assigner takes about 0.1 s per text."""
    candidates = max(8, 2 * k) + max(0, rounds - 1) * max(4, k)
    calls = -(-max(8, 2 * k) // 8) + max(0, rounds - 1)
    seconds = 0.0
    if plan.proposer == "llm":
        seconds += calls * (0.5 / 8 if endpoint else 2.0) * (8 if endpoint else 1)
    else:
        seconds += 0.1 * n_texts + 5
    if plan.assigner == "llm":
        seconds += candidates * (n_texts + 1) * (0.5 / 8 if endpoint else 0.15)
    return seconds
