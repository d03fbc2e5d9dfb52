"""Hard-negative mining: the positive-aware margin, known positives, LEMON cluster pools."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import ConfigError, EmbedlabError
from embedlab.train.mining import mine_hard_negatives, mine_texts

rng = np.random.default_rng(0)
CENTERS = rng.normal(size=(8, 16))
CORPUS = CENTERS[np.repeat(np.arange(8), 25)] + 0.4 * rng.normal(size=(200, 16))
POS_IDX = np.arange(0, 200, 10)  # 20 queries, each a noisy copy of one corpus document
QUERIES = CORPUS[POS_IDX] + 0.2 * rng.normal(size=(20, 16))


def cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("strategy", ["topk", "lemon"])
def test_margin_and_known_positives(strategy):
    known = [{int(p), int(p) + 1} for p in POS_IDX]  # a second, unlabelled-elsewhere positive too
    mined = mine_hard_negatives(
        QUERIES, CORPUS[POS_IDX], CORPUS, known, num_negatives=4, strategy=strategy, n_clusters=8
    )
    for i, negs in enumerate(mined.negatives):
        assert len(negs) == 4 and not set(negs) & known[i]
        pos = cos(QUERIES[i], CORPUS[POS_IDX[i]])
        for j in negs:
            assert cos(QUERIES[i], CORPUS[j]) <= 0.95 * pos + 1e-6


def test_topk_negatives_are_the_hardest_allowed():
    known = [{int(p)} for p in POS_IDX]
    mined = mine_hard_negatives(QUERIES, CORPUS[POS_IDX], CORPUS, known, num_negatives=3, relative_margin=0.05)
    for i, negs in enumerate(mined.negatives):
        pos = cos(QUERIES[i], CORPUS[POS_IDX[i]])
        allowed = [
            (cos(QUERIES[i], CORPUS[j]), j)
            for j in range(200)
            if j not in known[i] and cos(QUERIES[i], CORPUS[j]) < 0.95 * pos
        ]
        assert negs == [j for _, j in sorted(allowed, key=lambda t: -t[0])[:3]]


def test_lemon_negatives_are_harder_than_uniform():
    known = [{int(p)} for p in POS_IDX]
    mined = mine_hard_negatives(
        QUERIES, CORPUS[POS_IDX], CORPUS, known, num_negatives=4, strategy="lemon", n_clusters=8, probe=1
    )
    lemon = np.mean([s for row in mined.negative_scores for s in row])
    uniform = np.mean([cos(QUERIES[i], CORPUS[j]) for i in range(20) for j in rng.choice(200, 4, replace=False)])
    assert lemon > uniform + 0.2


def test_bad_arguments():
    with pytest.raises(EmbedlabError, match="strategy"):
        mine_hard_negatives(QUERIES, QUERIES, CORPUS, [set()] * 20, strategy="random")
    with pytest.raises(EmbedlabError, match="same length"):
        mine_hard_negatives(QUERIES, QUERIES[:3], CORPUS, [set()] * 20)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strategy": "random"}, "strategy must be one of topk, lemon; got 'random'"),
        ({"relative_margin": 1.0}, "relative_margin must be in [0, 1); got 1.0"),
        ({"relative_margin": -0.1}, "relative_margin must be in [0, 1); got -0.1"),
        ({"num_negatives": 0}, "num_negatives must be a positive integer; got 0"),
        ({"top_k": 0}, "top_k must be a positive integer; got 0"),
        ({"n_clusters": 0}, "n_clusters must be a positive integer; got 0"),
        ({"probe": -1}, "probe must be a positive integer; got -1"),
    ],
)
def test_bad_settings_are_one_line_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as err:
        mine_hard_negatives(QUERIES, QUERIES, CORPUS, [set()] * 20, **kwargs)
    assert str(err.value) == message


def test_mine_texts_with_a_tiny_model(tiny_bert):
    from embedlab.models import Embedder

    pairs = [
        ("the cat sat", "the cat sat on the mat"),
        ("a dog ran", "a dog ran fast"),
        ("the sky", "the sky is blue"),
        ("i read", "i read a book"),
        ("the red car", "a big red car"),
    ]
    rows = mine_texts(Embedder.from_pretrained(tiny_bert), pairs, num_negatives=2, relative_margin=0.0)
    for row in rows:
        assert row["positive"] not in row["negatives"] and len(row["negatives"]) <= 2
