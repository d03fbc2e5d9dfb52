"""GoalEx: the selection programme against brute force, the loop with a scripted LLM, the cache, bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest

from embedlab.analysis import goalex as gx
from embedlab.analysis.goalex_llm import LLM, CachedLLM, parse_yes_no
from embedlab.errors import ConfigError, EmptyInput, InputError

# --- a synthetic corpus: 4 topics x 10 texts, each topic with its own keyword -----------------------------
TOPICS = {"sports": "football", "cooking": "recipe", "weather": "rain", "money": "bank"}
CORPUS: list[str] = []
TRUTH: list[str] = []
for _topic, _word in TOPICS.items():
    for _i in range(10):
        _extra = " on monday" if _i < 6 else ""  # 24/40 = 60% mention monday (too broad: pruned at 40%)
        CORPUS.append(f"text {_i} about {_word}{_extra} number {_i}")
        TRUTH.append(_topic)

EXPL = {f"is about {w}": w for w in TOPICS.values()}
EXPL["mentions monday"] = "monday"
EXPL["is about football or recipe"] = "football|recipe on monday"  # 16/40: overlaps two true clusters


class ScriptedLLM(LLM):
    """Proposes from a script (one answer per generate call, the last repeated) and assigns by keyword:
    log-odds +3 when the explanation's keyword is in the text, -3 otherwise."""

    name = "scripted"

    def __init__(self, script: list[str], unreadable: set[tuple[str, str]] = frozenset()) -> None:
        super().__init__()
        self.script = script
        self.gen_calls = 0
        self.prompts: list[tuple[str, str]] = []
        self.unreadable = unreadable
        self.temperatures: list[float] = []

    @property
    def fingerprint(self) -> str:
        return "scripted:1"

    def generate(self, turns, *, max_new_tokens=160, temperature=0.0, seed=0):
        self.temperatures.append(temperature)
        out = []
        for t in turns:
            self.prompts.append(t)
            out.append(self.script[min(self.gen_calls, len(self.script) - 1)])
            self.gen_calls += 1
        self.calls += len(turns)
        return out

    def yes_no(self, turns):
        out = []
        for _system, user in turns:
            expl = user.split("Property: ", 1)[1].split("\n", 1)[0]
            text = user.split("Text: ", 1)[1].split("\n", 1)[0]
            if (text, expl) in self.unreadable:
                out.append(None)
                continue
            words = EXPL.get(expl, expl.split()[-1]).split("|")
            out.append(3.0 if any(w in text for w in words) else -3.0)
        self.calls += len(turns)
        return out


def lines(*expls: str) -> str:
    return "Here are the descriptions:\n" + "\n".join(f'- "{e}"' for e in expls)


ALL4 = lines(
    "is about football",
    "is about recipe",
    "is about rain",
    "is about bank",
    "mentions monday",
    "is about football or recipe",
)


def cfg(**kw):
    base = dict(k=4, goal="cluster by topic", rounds=2, sample_size=10, per_call=8)
    base.update(kw)
    return gx.GoalExConfig(**base)


# --- the integer programme ---------------------------------------------------------------------------------


def _cost_by_hand(A, chosen, lo, lm, k):
    """The programme's objective for one choice, text by text: a text covered y times costs lm if y == 0 and
    lo * (y - 1) otherwise; without K each chosen column costs 1 more. Written from the paper, not from ilp_cost."""
    total = 0.0
    for row in A:
        y = sum(int(row[j]) for j in chosen)
        total += lm if y == 0 else lo * (y - 1)
    return total + (0 if k else len(chosen))


def _brute_force(A, k, lo, lm):
    """The optimum by enumerating every subset of columns (of size k when k is given)."""
    import itertools

    J = A.shape[1]
    sizes = [k] if k else range(J + 1)
    return min(_cost_by_hand(A, combo, lo, lm, k) for size in sizes for combo in itertools.combinations(range(J), size))


@pytest.mark.parametrize("seed", range(40))
def test_ilp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, J = rng.integers(3, 11), rng.integers(1, 7)
    A = (rng.random((n, J)) < rng.uniform(0.15, 0.6)).astype(float)
    lo, lm = [(0.5, 1.0), (1.0, 1.0), (0.2, 2.0)][seed % 3]
    for k in [None, *range(1, J + 1)]:
        sel = gx.select_ilp(A, k, lambda_overlap=lo, lambda_miss=lm)
        assert sel.relaxed is None
        best = _brute_force(A, k, lo, lm)
        assert _cost_by_hand(A, sel.chosen, lo, lm, k) == pytest.approx(best)  # the chosen columns are optimal
        assert sel.objective == pytest.approx(best)
        assert k is None or len(sel.chosen) == k


def test_brute_force_oracle_hand_case():
    # 3 texts; col 0 covers texts 0,1; col 1 covers text 1: choosing both covers text 1 twice (0.5) and misses
    # text 2 (1.0)
    A = np.array([[1, 0], [1, 1], [0, 0]], dtype=float)
    assert _cost_by_hand(A, [0, 1], 0.5, 1.0, 2) == pytest.approx(1.5)
    assert _brute_force(A, 1, 0.5, 1.0) == pytest.approx(1.0)  # col 0 alone: text 2 missed
    assert _brute_force(A, None, 0.5, 1.0) == pytest.approx(2.0)  # col 0 (1) + a miss (1)


def test_ilp_hand_case_and_relaxation():
    # texts 0-1 covered by col 0, text 2 by col 1, col 2 covers everything (overlaps both)
    A = np.array([[1, 0, 1], [1, 0, 1], [0, 1, 1]], dtype=float)
    assert gx.select_ilp(A, 2).chosen == [0, 1]  # cost 0
    assert gx.select_ilp(A, 1).chosen == [2]  # cost 0 beats col 0 alone (misses text 2: cost 1)
    assert gx.ilp_cost(A, [0, 1, 2]) == pytest.approx(1.5)  # every text covered twice: 3 * 0.5
    sel = gx.select_ilp(A[:, :2], 3)  # K > J: infeasible as stated
    assert sel.chosen == [0, 1] and "infeasible" in sel.relaxed and "relaxed" in sel.relaxed


def test_parse_explanations():
    text = (
        'Sure!\n- "asks about a card"\n* "Asks about a card."\n2. mentions fees\n- ""\nnot a list line\n'
        '- "' + "word " * 40 + '"\n\u2022 \u201cis angry\u201d'
    )
    assert gx.parse_explanations(text) == ["asks about a card", "mentions fees", "is angry"]
    assert gx.parse_explanations("I cannot help with that.") == []
    assert parse_yes_no(" Yes, it does") > 0 and parse_yes_no("no.") < 0 and parse_yes_no("Maybe") is None


# --- the loop ----------------------------------------------------------------------------------------------


def test_loop_recovers_topics_prunes_and_explains():
    llm = ScriptedLLM([ALL4])
    res = gx.GoalEx(llm).fit(CORPUS, cfg(rounds=1))
    assert gx.cluster_scores(TRUTH, res.labels)["accuracy"] == 1.0
    assert sorted(res.explanations) == sorted(f"is about {w}" for w in TOPICS.values())
    cands = {c["explanation"]: c for c in res.candidates}
    assert "more than 40%" in cands["mentions monday"]["pruned"]  # 24/40 texts
    assert (
        cands["is about football or recipe"]["pruned"] is None and not cands["is about football or recipe"]["selected"]
    )
    assert res.unassigned == [] and not res.notes
    # the proposer saw the goal and numbered texts
    system, user = llm.prompts[0]
    assert "cluster by topic" in user and "1. " in user and "Write 8 descriptions" in user


def test_loop_reproposes_from_uncovered_texts():
    first = lines("is about football", "is about recipe", "is about rain", "mentions monday")
    llm = ScriptedLLM([first, lines("is about bank")])
    res = gx.GoalEx(llm).fit(CORPUS, cfg(rounds=3, k=4))
    assert gx.cluster_scores(TRUTH, res.labels)["accuracy"] == 1.0
    assert "is about bank" in res.explanations
    # round 1's sample is drawn only from the 10 texts round 0 left uncovered (the bank texts)
    r1 = res.rounds[1]
    assert r1["sample_uncovered"] == 10 and all(TRUTH[i] == "money" for i in r1["sample"])
    shown = llm.prompts[-1][1].split("Now your task.")[1].split("Texts:\n")[1].split("\nWrite")[0].splitlines()
    assert len(shown) == 10 and all("bank" in line for line in shown)
    # round 0 had only 3 usable explanations for K=4: the programme was relaxed then, not at the end
    assert res.rounds[0]["relaxed"] and not res.rounds[-1]["relaxed"] and len(res.rounds) == 2
    assert res.candidates[-1]["round"] == 1


def test_infeasible_programme_is_relaxed_and_said():
    llm = ScriptedLLM([lines("is about football", "is about rain")])
    res = gx.GoalEx(llm).fit(CORPUS, cfg(rounds=2, k=3))
    assert len(res.explanations) == 2
    assert any("infeasible" in n and "relaxed" in n for n in res.notes)
    assert any("no new explanation" in n for n in res.notes)
    assert len(res.unassigned) == 20


def test_unparseable_answers_are_retried_then_skipped():
    # proposer: junk, junk, then a valid list (3 tries = 1 + max_retries 2)
    llm = ScriptedLLM(["I am a language model.", "Sorry.", ALL4])
    runner = gx.GoalEx(llm)
    res = runner.fit(CORPUS, cfg(rounds=1))
    assert llm.gen_calls == 3 and gx.cluster_scores(TRUTH, res.labels)["accuracy"] == 1.0
    # the first try is greedy, the retries sampled; only the third answer parsed
    assert llm.temperatures == [0.0, 0.7, 0.7]
    assert [(p["attempt"], bool(p["parsed"])) for p in runner.proposal_log] == [(0, False), (1, False), (2, True)]
    # always junk: reported and skipped, never fatal
    llm = ScriptedLLM(["no list here"])
    res = gx.GoalEx(llm).fit(CORPUS, cfg(rounds=1))
    assert llm.gen_calls == 3 and res.explanations == []
    assert any("no '- \"...\"' line after 3 tries; skipped" in n for n in res.notes)
    # an unreadable yes/no answer (always None): retried twice, then counted as No and reported
    bad = {(CORPUS[0], "is about football")}
    llm = ScriptedLLM([ALL4], unreadable=bad)
    res = gx.GoalEx(llm).fit(CORPUS, cfg(rounds=1))
    assert any("1 (text, explanation) answer(s) unreadable" in n for n in res.notes)
    assert res.labels[0] == gx.UNASSIGNED and gx.cluster_scores(TRUTH, res.labels)["accuracy"] == pytest.approx(39 / 40)


def test_cache_second_run_makes_no_llm_calls(tmp_path):
    first = ScriptedLLM([ALL4])
    r1 = gx.GoalEx(CachedLLM(first, tmp_path)).fit(CORPUS, cfg(rounds=1))
    assert first.calls > 0
    second = ScriptedLLM(["junk that would break the run"])
    cached = CachedLLM(second, tmp_path)
    r2 = gx.GoalEx(cached).fit(CORPUS, cfg(rounds=1))
    assert second.calls == 0 and cached.misses == 0 and cached.hits > 0
    assert r2.explanations == r1.explanations and (r2.labels == r1.labels).all()

    # another model fingerprint does not share the entries
    class Other(ScriptedLLM):
        fingerprint = "scripted:2"

    third = Other([ALL4])
    gx.GoalEx(CachedLLM(third, tmp_path)).fit(CORPUS, cfg(rounds=1))
    assert third.calls == first.calls


class BagOfWords:
    """A fake embedder: counts of the topic keywords (so cosine is 1 on the keyword, 0 elsewhere)."""

    vocab = list(TOPICS.values()) + ["monday"]

    def encode(self, texts, show_progress=False):
        return np.array([[t.count(w) for w in self.vocab] for t in texts], dtype=float) + 1e-3


def test_embedding_assigner_recovers_topics():
    llm = ScriptedLLM([ALL4])
    res = gx.GoalEx(llm, assigner="embedding", embedder=BagOfWords()).fit(CORPUS, cfg(rounds=1, threshold=0.1))
    assert gx.cluster_scores(TRUTH, res.labels)["accuracy"] == 1.0
    assert res.method == "goalex-embedding" and llm.calls == 1  # the LLM only proposed


def test_bad_input_one_line_errors():
    llm = ScriptedLLM([ALL4])
    with pytest.raises(ConfigError, match=r"^k 41 is larger than the number of texts \(40\)$"):
        gx.GoalEx(llm).fit(CORPUS, cfg(k=41))
    with pytest.raises(EmptyInput, match="corpus is empty"):
        gx.GoalEx(llm).fit([], cfg())
    with pytest.raises(InputError, match="goal is empty"):
        gx.GoalEx(llm).fit(CORPUS, cfg(goal="  "))
    with pytest.raises(ConfigError, match=r"^k 4 is larger than the number of texts \(3\)$"):
        gx.kmeans_clusters(np.eye(3), 4)
    assert llm.calls == 0


@pytest.mark.parametrize(
    "changes, names, message",
    [
        ({"k": 0}, None, "k must be a positive integer; got 0"),
        ({"k": 2.0}, None, "k must be a positive integer; got 2.0"),
        ({"rounds": 0}, None, "rounds must be a positive integer; got 0"),
        ({"sample_size": -1}, None, "sample_size must be a positive integer; got -1"),
        ({"max_cluster_fraction": 0.0}, None, "max_cluster_fraction must be in (0, 1]; got 0.0"),
        ({"max_cluster_fraction": 1.5}, None, "max_cluster_fraction must be in (0, 1]; got 1.5"),
        ({"k": 41}, {"k": "--k"}, "--k 41 is larger than the number of texts (40)"),
        ({"sample_size": 0}, {"sample_size": "--sample-size"}, "--sample-size must be a positive integer; got 0"),
    ],
)
def test_config_check_uses_the_shared_messages(changes, names, message):
    with pytest.raises(ConfigError) as err:
        cfg(**changes).check(len(CORPUS), names)
    assert str(err.value) == message


def test_scores_hand_computed():
    from sklearn.metrics import adjusted_rand_score

    true = ["a", "a", "a", "b", "b", "c"]
    pred = [1, 1, gx.UNASSIGNED, 0, 0, gx.UNASSIGNED]
    best = [1, 1, 1, 0, 0, 0]  # every text to its best explanation (the paper's protocol)
    s = gx.cluster_scores(true, pred, best)
    # strict: cluster 1 -> a (2 right), cluster 0 -> b (2 right), the two unassigned texts are wrong
    assert s["strict_accuracy"] == pytest.approx(4 / 6)
    # F1 per class: a: P 2/2, R 2/3 -> 0.8; b: P 2/2, R 2/2 -> 1; c: 0
    assert s["strict_macro_f1"] == pytest.approx((0.8 + 1.0 + 0.0) / 3)
    # each unassigned text is a cluster of its own
    assert s["strict_ari"] == pytest.approx(adjusted_rand_score(true, [1, 1, 7, 0, 0, 8]))
    assert s["unassigned"] == pytest.approx(2 / 6)
    # paper: {a,a,a} -> a, {b,b,c} -> b: 5 right; F1 a: 1, b: P 2/3 R 1 -> 0.8, c: 0
    assert s["accuracy"] == pytest.approx(5 / 6)
    assert s["macro_f1"] == pytest.approx((1.0 + 0.8 + 0.0) / 3)
    assert s["ari"] == pytest.approx(adjusted_rand_score(true, best))
    assert gx.cluster_scores(true, [5, 5, 5, 7, 7, 9])["ari"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="6 true labels but 2 predictions"):
        gx.cluster_scores(true, [0, 1])


def test_unassigned_texts_are_not_a_cluster():
    # 79 of 80 texts unassigned: the old scoring matched the unassigned group to a class (accuracy 0.26)
    true = [c for c in "abcd" for _ in range(20)]
    pred = [gx.UNASSIGNED] * 80
    pred[0] = 0
    s = gx.cluster_scores(true, pred)
    assert s["strict_accuracy"] == pytest.approx(1 / 80) and s["accuracy"] == pytest.approx(1 / 80)
    assert s["strict_ari"] == pytest.approx(0.0, abs=1e-9)
    assert s["strict_macro_f1"] == pytest.approx((2 * 1 * (1 / 20) / (1 + 1 / 20)) / 4)  # class a: P 1, R 1/20


def test_threshold_is_strict():
    # the scripted log-odds minus the content-free text's: 3 - (-3) = 6 for a keyword text, 0 otherwise
    res = gx.GoalEx(ScriptedLLM([ALL4])).fit(CORPUS, cfg(rounds=1, threshold=6.0))
    assert res.explanations == [] and all(c["holds_for"] == 0 for c in res.candidates)
    res = gx.GoalEx(ScriptedLLM([ALL4])).fit(CORPUS, cfg(rounds=1, threshold=5.999))
    assert gx.cluster_scores(TRUTH, res.labels)["strict_accuracy"] == 1.0


def _examples_shown(prompts):
    out = []
    for _system, user in prompts:
        line = [ln for ln in user.splitlines() if "Match the level of detail" in ln]
        out.append(
            tuple(sorted(re.findall(r'"([^"]+)"', line[0].split("descriptions:", 1)[1].split(". Answer")[0])))
            if line
            else None
        )
    return out


def test_each_proposer_call_draws_its_own_two_examples():
    first = lines("is about football", "is about recipe", "is about rain", "mentions monday")
    pairs = set()
    for seed in range(6):
        llm = ScriptedLLM([first] * 4 + [lines("is about bank")])  # round 0 makes 4 calls
        runner = gx.GoalEx(llm)
        runner.fit(CORPUS, cfg(rounds=2, k=4, per_call=2, seed=seed))
        shown = _examples_shown(llm.prompts)
        calls = [p["round"] for p in runner.proposal_log]
        assert shown[0] is None and calls.count(0) == 4 and calls.count(1) == 2  # 8 wanted / 2 per call; then 4 / 2
        usable = {"is about football", "is about recipe", "is about rain"}  # "mentions monday" is pruned
        for s, r, call in zip(shown, calls, [p["call"] for p in runner.proposal_log]):
            if r == 0 and call > 0:
                assert len(s) == 2 and set(s) <= {
                    "is about football",
                    "is about recipe",
                    "is about rain",
                    "mentions monday",
                }
            if r == 1:
                assert len(s) == 2 and set(s) <= usable
                pairs.add(s)
        again = ScriptedLLM([first] * 4 + [lines("is about bank")])
        gx.GoalEx(again).fit(CORPUS, cfg(rounds=2, k=4, per_call=2, seed=seed))
        assert _examples_shown(again.prompts) == shown  # seeded
    assert len(pairs) > 1  # not always the same first two


def test_kmeans_warning_becomes_a_note():
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X = np.repeat(np.eye(2), 20, axis=0)  # two distinct points, K = 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = gx.kmeans_clusters(X, 4)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert any("found 2 distinct cluster(s) for K=4" in n and "2 distinct embedding(s)" in n for n in res.notes)


def test_kmeans_and_outputs(tmp_path):
    X = np.repeat(np.eye(4), 10, axis=0) + np.random.default_rng(0).normal(0, 0.01, (40, 4))
    res = gx.kmeans_clusters(X, 4)
    assert gx.cluster_scores(TRUTH, res.labels)["accuracy"] == 1.0
    llm = ScriptedLLM([ALL4])
    res = gx.GoalEx(llm).fit(CORPUS, cfg(rounds=1))
    paths = gx.write_outputs(res, CORPUS, tmp_path / "out", X)
    import json

    data = json.loads(paths["json"].read_text())
    assert {c["explanation"] for c in data["clusters"]} == set(res.explanations) and len(data["labels"]) == 40
    md = paths["markdown"].read_text()
    assert "## 0. is about" in md and "(10 texts)" in md and md.count("\n- text") == 20  # 4 clusters x 5 examples
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_shipped_sample_and_prompts():
    texts = gx.sample_corpus_path().read_text().splitlines()
    assert len(texts) == 40 and all(t.strip() for t in texts)
    p = gx.load_prompts()
    assert "{goal}" in p["propose"]["user"] and "{text}" in p["assign"]["user"]


def test_copied_text_is_flagged():
    assert gx.copied_text("Text 3 about rain number 3.", CORPUS) == 23
    assert gx.copied_text("is about rain", CORPUS) is None
    res = gx.GoalEx(ScriptedLLM([lines("text 0 about football on monday number 0", "is about rain")])).fit(
        CORPUS, cfg(rounds=1, k=2)
    )
    assert [c["copies_text"] for c in res.candidates] == [0, None]
    assert any("1 of 2 proposed explanation(s) copy a text" in n for n in res.notes)
