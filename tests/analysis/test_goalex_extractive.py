"""The extractive proposer (embedlab's offline stand-in for GoalEx's LLM proposer): c-TF-IDF against a hand
computation, Otsu's threshold, templates, and the whole loop with no LLM on hand-made embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedlab.analysis import goalex as gx
from embedlab.analysis.goalex_extractive import (
    ExtractiveProposer,
    ctfidf,
    fill_template,
    goal_template,
)
from embedlab.errors import ConfigError

from .test_goalex import ALL4, CORPUS, TOPICS, TRUTH, ScriptedLLM


def test_ctfidf_hand_computed():
    # class 0: term0 x2, term2 x2; class 1: term1 x4. A = 8 words / 2 classes = 4; f = [2, 4, 2]
    W = ctfidf(np.array([[2, 0, 2], [0, 4, 0]]))
    expected = np.array([[0.5 * math.log(1 + 4 / 2), 0, 0.5 * math.log(1 + 4 / 2)], [0, 1.0 * math.log(1 + 4 / 4), 0]])
    assert W == pytest.approx(expected)


def test_otsu_threshold_hand_computed():
    # cuts of [1, 2, 3, 10]: between-class variance 3, 6.25, 12 -> the cut between 3 and 10
    assert gx.otsu_threshold(np.array([10.0, 1, 3, 2])) == pytest.approx(6.5)
    assert gx.otsu_threshold(np.array([0.0, 0, 1, 1])) == pytest.approx(0.5)
    assert gx.otsu_threshold(np.array([2.0, 2, 2])) == math.inf  # nothing to split: nothing holds


def test_goal_template():
    assert goal_template("by topic; each description should look like 'is about <topic>'") == "is about <topic>"
    assert goal_template('group them, descriptions like "mentions <a product>"') == "mentions <a product>"
    assert goal_template("by what the customer wants") == "is about <topic>"
    assert fill_template("is about <topic>", ["a"]) == "is about a"
    assert fill_template("is about <topic>", ["a", "b c", "d"]) == "is about a, b c or d"


class Words:
    """A hand-made embedder over the topic keywords and 'monday': counts of each word, plus a small constant
    (so every text and phrase has a direction). Phrases and texts are embedded alike."""

    vocab = (*TOPICS.values(), "monday")

    def __init__(self):
        self.calls = 0

    def encode(self, texts, show_progress=False):
        self.calls += 1
        return np.array([[t.count(w) for w in self.vocab] for t in texts], dtype=float) + 1e-3


def test_extractive_loop_recovers_and_names_topics_without_an_llm():
    emb = Words()
    res = gx.GoalEx(None, proposer="extractive", assigner="embedding", embedder=emb).fit(
        CORPUS, gx.GoalExConfig(k=4, goal="cluster by topic", rounds=2)
    )
    assert res.method == "extractive-pas" and res.settings["proposer"] == "extractive"
    s = gx.cluster_scores(TRUTH, res.labels, res.forced_labels)
    assert s["accuracy"] == 1.0 and s["strict_accuracy"] == 1.0
    # each selected explanation names the keyword of the topic it was matched to
    for c in res.clusters():
        topic = TRUTH[c["members"][0]]
        assert TOPICS[topic] in c["explanation"] and c["explanation"].startswith("is about ")
    assert len(res.explanations) == 4


def test_extractive_proposer_uses_the_goals_template():
    prop = ExtractiveProposer(Words())
    V = Words().encode(CORPUS)
    found = prop.propose("cluster by topic, each like 'mentions <thing>'", CORPUS, range(40), 4, V)
    assert found and all(f.startswith("mentions ") for f in found)
    # in a later round only the focus texts are grouped; their terms are set apart from the rest
    rain = [i for i, t in enumerate(TRUTH) if t == "weather"]
    later = prop.propose("by topic", CORPUS, rain, 4, V, round_no=1)
    assert any("rain" in f for f in later)
    focus_words = {w for i in rain for w in CORPUS[i].split()}
    for f in later:  # every term comes from the focus texts
        assert set(f.removeprefix("is about ").replace(",", " ").replace(" or ", " ").split()) <= focus_words


def test_extractive_needs_an_embedder_and_no_llm_is_needed():
    with pytest.raises(ConfigError, match="extractive proposer needs an embedder"):
        gx.GoalEx(ScriptedLLM([ALL4]), proposer="extractive", assigner="llm")
    with pytest.raises(ConfigError, match="need an LLM"):
        gx.GoalEx(None, proposer="extractive", assigner="llm", embedder=Words())
