"""Which proposer ``embedlab cluster`` uses: the paper's LLM proposer with an endpoint or a large enough local
LLM, the extractive proposer (and no LLM load) for a small one; parameters counted from safetensors headers."""

from __future__ import annotations

import pytest

from embedlab.analysis.goalex_plan import (
    ClusterPlan,
    count_parameters,
    estimate_seconds,
    plan_cluster,
)
from embedlab.errors import ConfigError

from .test_goalex_llm import _tiny_causal_lm


def test_endpoint_keeps_the_papers_llm_proposer():
    plan = plan_cluster("my-model", "http://127.0.0.1:8000/v1")
    assert (plan.proposer, plan.assigner, plan.load_llm) == ("llm", "llm", True)
    assert any("GoalEx's LLM proposer" in m for m in plan.messages)
    assert plan_cluster("m", "http://x/v1", assigner="embedding").assigner == "embedding"


def test_small_local_llm_gets_the_extractive_proposer(tmp_path):
    from transformers import AutoModelForCausalLM

    path = _tiny_causal_lm(tmp_path / "lm")
    expected = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(path)).parameters())
    assert count_parameters(str(path)) == expected
    plan = plan_cluster(str(path))
    assert (plan.proposer, plan.assigner, plan.load_llm) == ("extractive", "embedding", False)
    assert any("too small to propose" in m for m in plan.messages)
    assert any("proposer: extractive" in m and "not the paper's" in m for m in plan.messages)
    # a large enough model (here: a lowered bar) proposes itself
    assert plan_cluster(str(path), min_params=10).proposer == "llm"
    forced = plan_cluster(str(path), proposer="llm")
    assert forced.proposer == "llm" and forced.load_llm and any(m.startswith("warning:") for m in forced.messages)


def test_bad_choices_and_estimates():
    with pytest.raises(ConfigError, match="--proposer must be one of auto, llm, extractive"):
        plan_cluster("x", proposer="gpt")
    with pytest.raises(ConfigError, match="--assigner must be one of"):
        plan_cluster("x", assigner="both")
    fast = ClusterPlan("extractive", "embedding", False)
    slow = ClusterPlan("llm", "llm", True)
    assert estimate_seconds(slow, 40, 4) > 10 * estimate_seconds(fast, 40, 4)
