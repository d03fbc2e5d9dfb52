"""all-MiniLM-L6-v2 against MTEB's published scores (../shared/reference/mteb_scores.json).

Exact-protocol tasks must land within ±0.5 points. Few-shot classification sets whose undersampling
stream cannot be replayed exactly (the row order or RNG state of MTEB's run differs, see
docs/evaluation.md) must put the published score inside the spread of our protocol over 10 RNG
streams (within 3 standard deviations) — a broken evaluator fails both.
"""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest

from embedlab.eval import evaluators as ev
from embedlab.eval.registry import builtin_tasks
from embedlab.eval.runner import EmbeddingCache, make_encoder, run_task
from embedlab.models import Embedder
from embedlab.models.embedder import resolve_dtype
from embedlab.settings import data_dir

pytestmark = pytest.mark.slow
DTYPE = resolve_dtype("auto")  # bf16 where native (the scores hold to ±0.5 either way); emulated bf16 is ~6x slower
EXACT = ["STSBenchmark", "SICK-R", "STS12", "STS14", "STS15", "SciFact", "Banking77Classification", "TwitterURLCorpus"]
# (task, split, subset). ImdbClassification (25,000 reviews of 256 tokens: ~40 min on a 2-core AVX2 CPU) is
# left to bench/eval_suite.py, which scores it against MTEB's figure (docs/eval_suite.md).
# AmazonCounterfactual's de and ja cells are stream-dependent too: our replay happened to land within 0.5 of
# them (ja 0.46 off in fp32), and a CI run in bf16 missed ja by 0.51. A single stream's std there is 0.8-1.6.
AMAZON_SUBSETS = ("en-ext", "en", "de", "ja")
STREAM_DEPENDENT = {("AmazonCounterfactualClassification", "test", sub) for sub in AMAZON_SUBSETS} | {
    ("TweetSentimentExtractionClassification", "test", "default"),
}


@pytest.fixture(scope="module")
def setup():
    if data_dir() is None:
        pytest.skip("no shared data directory")
    refs = {
        (r["task"], r["split"], r["hf_subset"]): 100 * r["main_score"]
        for r in json.loads((data_dir().parent / "reference" / "mteb_scores.json").read_text())["scores"]
        if r["model"].endswith("all-MiniLM-L6-v2")
    }
    emb = Embedder.from_pretrained("minilm-l6")
    return refs, emb, builtin_tasks(), tempfile.mkdtemp()


@pytest.mark.parametrize("name", EXACT)
def test_exact_protocol_tasks(setup, name):
    refs, emb, tasks, out = setup
    task = tasks[name]
    result = run_task(task, emb, out, dtype=DTYPE, cache=EmbeddingCache())
    ref = refs[(task.mteb_name, "test", "default")]
    assert abs(100 * result["main_score"] - ref) <= 0.5, (name, 100 * result["main_score"], ref)


def test_stream_dependent_sets_lie_within_the_spread_of_our_protocol(setup):
    """The published score, and the runner's own seed-42 replay, inside mean ± (3·std + 0.5) of 10 streams."""
    refs, emb, tasks, out = setup
    replay = run_task(tasks["AmazonCounterfactualClassification"], emb, out, dtype=DTYPE, cache=EmbeddingCache())
    for name, split, sub in sorted(STREAM_DEPENDENT):
        task = tasks[name]
        prefix = "" if sub == "default" else f"{sub}/"
        train, test = ev._read_labelled(task, f"{prefix}train"), ev._read_labelled(task, f"{prefix}{split}")
        texts = list(dict.fromkeys(train[0] + test[0]))
        encode = make_encoder(emb, prompts={}, dtype=DTYPE, cache=EmbeddingCache())
        table = dict(zip(texts, encode(texts, "query")))
        lookup = lambda xs, role: np.stack([table[x] for x in xs])  # noqa: E731, B023 (used within this iteration)
        scores = [
            100 * ev._few_shot(task, lookup, train, test, np.random.RandomState(seed))[0]["accuracy"]
            for seed in range(10)
        ]
        ref = refs[(name, split, sub)]
        mean, std = float(np.mean(scores)), float(np.std(scores))
        assert abs(ref - mean) <= 3 * std + 0.5, (name, sub, ref, mean, std)
        if name == "AmazonCounterfactualClassification":
            ours = 100 * replay["scores"][f"{split}/{sub}/accuracy"]
            assert abs(ours - mean) <= 3 * std + 0.5, (name, sub, ours, mean, std)
