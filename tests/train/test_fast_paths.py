"""The sped-up training paths give the losses of the unchanged ones: length-sorted chunks, the token
cache and the fused optimizer against one padded pass per group (the old step) and against
sentence-transformers' MultipleNegativesRankingLoss; the vectorised false-negative mask against brute force."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from embedlab.train import TrainConfig, Trainer
from embedlab.train import trainer as trainer_module
from embedlab.train.losses import false_negative_mask

WORDS = [
    "the cat sat",
    "a dog ran fast on the mat",
    "the sky is blue",
    "i read a book",
    "the red car",
    "a big house",
    "the moon",
    "we write code and data",
    "the sun is big",
    "a bird sat on the mat",
    "the river ran fast",
    "we read the data",
]


@pytest.fixture()
def bert_no_dropout(tiny_bert, tmp_path):
    """The tiny BERT without dropout, so that two ways of embedding the same texts must agree."""
    path = tmp_path / "bert-nodrop"
    shutil.copytree(tiny_bert, path)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture()
def triplets(tmp_path):
    rows = [
        {"query": w, "positive": f"{w} and more", "negatives": [f"not {WORDS[(i + 3) % len(WORDS)]} at all"]}
        for i, w in enumerate(WORDS)
    ]
    path = tmp_path / "triplets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(model, data, out, **kw):
    base = dict(
        model=str(model),
        data=str(data),
        output=str(out),
        steps=6,
        batch_size=4,
        lr=1e-3,
        warmup_steps=0,
        hard_negatives=1,
        mask_false_negatives=False,
        log_every=1,
        pooling="mean",
    )
    return TrainConfig(**{**base, **kw})


def _old_plan(trainer):
    """The unchanged step: queries, positives and negatives each in one padded pass."""

    def plan(lengths):
        b = trainer.config.batch_size
        return [list(range(0, b)), list(range(b, 2 * b)), list(range(2 * b, len(lengths)))]

    return plan


def test_chunked_step_with_fused_adamw_gives_the_losses_of_the_unchanged_step(
    bert_no_dropout, triplets, tmp_path, monkeypatch
):
    new = Trainer(_config(bert_no_dropout, triplets, tmp_path / "new"), show_progress=False)
    tokenized = []
    real = new.embedder.tokenize
    new.embedder.tokenize = lambda texts, prompts=None: tokenized.extend(texts) or real(texts, prompts)
    new_losses = new.fit().losses
    # each distinct text tokenized once, though 6 steps x 4 examples go twice through the 12 examples
    assert len(tokenized) == len(set(tokenized)) == 3 * len(WORDS)

    old = Trainer(_config(bert_no_dropout, triplets, tmp_path / "old"), show_progress=False)
    old._plan = _old_plan(old)
    monkeypatch.setattr(trainer_module, "_fused", lambda device: {})
    old_losses = old.fit().losses
    assert len(new_losses) == len(old_losses) == 6
    assert new_losses == pytest.approx(old_losses, abs=1e-4)
    assert new_losses[0] != pytest.approx(new_losses[-1], abs=1e-3)  # it trained: the comparison is not vacuous


def test_gradcache_plan_gives_the_losses_of_plain_training(bert_no_dropout, triplets, tmp_path):
    plain = Trainer(_config(bert_no_dropout, triplets, tmp_path / "p", steps=4), show_progress=False).fit()
    cached = Trainer(
        _config(bert_no_dropout, triplets, tmp_path / "c", steps=4, micro_batch_size=3), show_progress=False
    ).fit()
    assert cached.losses == pytest.approx(plain.losses, abs=1e-4)
    assert cached.tokens == plain.tokens  # the replayed pass is not counted twice


def test_step_loss_equals_sentence_transformers_mnrl(bert_no_dropout, triplets, tmp_path):
    """Independent check: sentence-transformers' MNRL (scale 20 = 1/0.05) on the same saved model and batch."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from embedlab.train.data import load_dataset

    cfg = _config(bert_no_dropout, triplets, tmp_path / "o", batch_size=8)
    trainer = Trainer(cfg, show_progress=False)
    trainer.embedder.save(tmp_path / "saved")
    examples = load_dataset(str(triplets))[:8]
    loss, cands = trainer._contrastive_step(examples, cfg.resolved_stages()[0], 1.0)
    assert cands == 16

    st = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    st.eval()
    mnrl = MultipleNegativesRankingLoss(st, scale=20.0)
    columns = [[e.query for e in examples], [e.positive for e in examples], [e.negatives[0] for e in examples]]
    features = [st.tokenize(c) for c in columns]
    with torch.no_grad():
        reference = float(mnrl(features, None))
    assert loss == pytest.approx(reference, abs=1e-4)


def test_vectorised_false_negative_mask_equals_brute_force():
    rng = random.Random(0)
    pool = ["a", "b", "c", "d", "e"]
    for _ in range(20):
        b, n = rng.randint(1, 6), rng.randint(0, 7)
        q = [rng.choice(pool) for _ in range(b)]
        p = [rng.choice(pool) for _ in range(b)]
        neg = [rng.choice(pool) for _ in range(n)]
        cands = p + neg
        brute = [
            [c == p[i] or c == q[i] or (j < b and j != i and q[j] == q[i]) for j, c in enumerate(cands)]
            for i in range(b)
        ]
        assert false_negative_mask(q, p, neg).tolist() == brute


def test_the_chunk_plan_splits_by_length_on_a_cpu_and_is_one_pass_on_an_accelerator(
    bert_no_dropout, triplets, tmp_path
):
    trainer = Trainer(_config(bert_no_dropout, triplets, tmp_path / "plan"), show_progress=False)
    lengths = [5] * 20 + [120] * 4  # twenty short texts and four long ones
    cpu = trainer._plan(lengths)
    # by hand: one pass costs 64 + 24 x 120 = 2,944 padded tokens; two (the short, then the long) cost
    # (64 + 20 x 5) + (64 + 4 x 120) = 708, and no split of equal lengths lowers that
    assert sorted(map(sorted, cpu)) == [list(range(20)), list(range(20, 24))]
    trainer.device = torch.device("cuda")  # the rule reads only the device's type (no GPU is touched)
    assert trainer._plan(lengths) == [list(range(24))]
    assert trainer._plan([]) == []
