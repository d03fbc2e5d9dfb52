"""InfoNCE, hard negatives, the in-batch switch, false-negative masks and Matryoshka against brute force."""

from __future__ import annotations

import math

import pytest
import torch

from embedlab.errors import EmbedlabError
from embedlab.train import info_nce, matryoshka_info_nce
from embedlab.train.losses import contrastive_loss, contrastive_loss_flat, false_negative_mask


def brute_info_nce(q, d, tau):
    total = 0.0
    for i in range(len(q)):
        sims = [float(torch.dot(q[i], d[j]) / (q[i].norm() * d[j].norm())) / tau for j in range(len(d))]
        total += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
    return total / len(q)


def test_info_nce_brute_force():
    torch.manual_seed(0)
    q, d = torch.randn(5, 8), torch.randn(5, 8)
    assert float(info_nce(q, d, 0.05)) == pytest.approx(brute_info_nce(q, d, 0.05), rel=1e-5)
    expected = brute_info_nce(q, d, 0.1) + 0.5 * brute_info_nce(q[:, :4], d[:, :4], 0.1)
    assert float(matryoshka_info_nce(q, d, [8, 4], [1.0, 0.5], 0.1)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(EmbedlabError, match="exceeds"):
        matryoshka_info_nce(q, d, [16])


def test_contrastive_loss_with_hard_negatives_brute_force():
    torch.manual_seed(1)
    b, k, d, tau = 3, 2, 6, 0.1
    q, p, n = torch.randn(b, d), torch.randn(b, d), torch.randn(b, k, d)

    def c(x, y):
        return float(torch.dot(x, y) / (x.norm() * y.norm())) / tau

    def ce(scores, label):
        return -(scores[label] - math.log(sum(math.exp(s) for s in scores)))

    allc = [p[j] for j in range(b)] + [n[j, m] for j in range(b) for m in range(k)]
    in_batch = sum(ce([c(q[i], x) for x in allc], i) for i in range(b)) / b
    assert float(contrastive_loss(q, p, n, temperature=tau)) == pytest.approx(in_batch, rel=1e-5)
    own = sum(ce([c(q[i], p[i])] + [c(q[i], n[i, m]) for m in range(k)], 0) for i in range(b)) / b
    assert float(contrastive_loss(q, p, n, temperature=tau, in_batch=False)) == pytest.approx(own, rel=1e-5)
    # masking candidate 1 for query 0 (a false negative) removes it from query 0's softmax only
    mask = torch.zeros(b, b + b * k, dtype=torch.bool)
    mask[0, 1] = True
    mask[1, 1] = True  # query 1's own positive: never masked
    masked = (
        ce([c(q[0], x) for j, x in enumerate(allc) if j != 1], 0)
        + sum(ce([c(q[i], x) for x in allc], i) for i in (1, 2))
    ) / b
    assert float(contrastive_loss(q, p, n, temperature=tau, false_negative_mask=mask)) == pytest.approx(
        masked, rel=1e-5
    )
    sym = (info_nce(q, p, tau) + info_nce(p, q, tau)) / 2
    assert float(contrastive_loss(q, p, temperature=tau, symmetric=True)) == pytest.approx(float(sym), rel=1e-5)


def _cos(x, y, tau):
    return float(torch.dot(x, y) / (x.norm() * y.norm())) / tau


def _ce(scores, label):
    return -(scores[label] - math.log(sum(math.exp(s) for s in scores)))


def test_flat_layout_mixed_rows_and_uneven_negatives_brute_force():
    """Rows 0 and 2 use in-batch negatives, row 1 does not; query 0 owns two negatives, query 1 none, query 2 one."""
    torch.manual_seed(2)
    tau = 0.05
    q, p, n = torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 5)
    owner = torch.tensor([0, 0, 2])
    cands = [p[0], p[1], p[2], n[0], n[1], n[2]]
    expected = (
        _ce([_cos(q[0], c, tau) for c in cands], 0)
        + _ce([_cos(q[1], p[1], tau)], 0)
        + _ce([_cos(q[2], c, tau) for c in cands], 2)
    ) / 3
    loss, per_query = contrastive_loss_flat(q, p, n, owner, temperature=tau, in_batch=torch.tensor([True, False, True]))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert per_query == pytest.approx((6 + 1 + 6) / 3)
    own_only = (
        _ce([_cos(q[0], c, tau) for c in (p[0], n[0], n[1])], 0)
        + _ce([_cos(q[1], p[1], tau)], 0)
        + _ce([_cos(q[2], c, tau) for c in (p[2], n[2])], 0)
    ) / 3
    assert float(contrastive_loss_flat(q, p, n, owner, temperature=tau, in_batch=False)[0]) == pytest.approx(
        own_only, rel=1e-5
    )
    with pytest.raises(EmbedlabError, match="owner"):
        contrastive_loss_flat(q, p, n, None)


def test_false_negative_mask_by_text_and_duplicate_queries():
    mask = false_negative_mask(["q0", "q1"], ["p0", "p1"], ["p1", "n", "p0", "m"])
    assert mask.tolist() == [[True, False, False, False, True, False], [False, True, True, False, False, False]]
    # the same query twice: each row's other positive is a false negative (the loss never masks the diagonal)
    mask = false_negative_mask(["q", "q", "r"], ["a", "b", "c"], [])
    assert mask.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    torch.manual_seed(3)
    q, p = torch.randn(3, 4), torch.randn(3, 4)
    got = float(contrastive_loss_flat(q, p, temperature=0.1, false_negative_mask=mask)[0])
    exp = (
        _ce([_cos(q[0], p[0], 0.1), _cos(q[0], p[2], 0.1)], 0)
        + _ce([_cos(q[1], p[1], 0.1), _cos(q[1], p[2], 0.1)], 0)
        + _ce([_cos(q[2], x, 0.1) for x in p], 2)
    ) / 3
    assert got == pytest.approx(exp, rel=1e-5)


def brute_contrastive(q, p, negs, owner, in_batch, fn_mask, tau, symmetric):
    """InfoNCE by hand, one row at a time. Query i sees positive/negative c when c is its own (its
    positive, or a negative it owns) or when it uses in-batch negatives; a candidate marked in
    ``fn_mask`` is dropped unless it is the query's own positive. The symmetric term: positive j sees
    query i when query i sees positive j (i == j always)."""
    b = len(q)
    cands = [p[j] for j in range(b)] + [negs[j] for j in range(len(negs))]
    forward = 0.0
    for i in range(b):
        scores, label = [], None
        for c, x in enumerate(cands):
            own = c == i or (c >= b and owner[c - b] == i)
            if not own and not in_batch[i]:
                continue
            if c != i and fn_mask[i][c]:
                continue
            if c == i:
                label = len(scores)
            scores.append(_cos(q[i], x, tau))
        forward += _ce(scores, label)
    forward /= b
    if not symmetric:
        return forward
    backward = 0.0
    for j in range(b):
        scores, label = [], None
        for i in range(b):
            if i != j and (not in_batch[i] or fn_mask[i][j]):
                continue
            if i == j:
                label = len(scores)
            scores.append(_cos(p[j], q[i], tau))
        backward += _ce(scores, label)
    return (forward + backward / b) / 2


# stsb-pairs style: both directions of a pair, and queries that reappear as other rows' negatives
PAIR_QUERIES = ["a man plays", "a guitar is played", "a dog runs", "a cat sleeps"]
PAIR_POSITIVES = ["a guitar is played", "a man plays", "a puppy runs", "a kitten naps"]
PAIR_NEGATIVES = ["a cat sleeps", "a man plays", "a dog runs"]
PAIR_OWNER = [0, 2, 3]


def test_false_negative_mask_masks_the_query_own_text():
    mask = false_negative_mask(PAIR_QUERIES, PAIR_POSITIVES, PAIR_NEGATIVES)
    #                     p0     p1     p2     p3     n0     n1     n2
    assert mask.tolist() == [
        [True, True, False, False, False, True, False],  # p1, n1 are "a man plays" (the query)
        [True, True, False, False, False, True, False],  # p0 is the query; n1 is its positive
        [False, False, True, False, False, False, True],  # n2 is the query "a dog runs"
        [False, False, False, True, True, False, False],
    ]  # n0 is the query "a cat sleeps"


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize(
    "in_batch", [(True, True, True, True), (True, False, True, False), (False, False, False, False)]
)
def test_masked_symmetric_loss_matches_brute_force(symmetric, in_batch):
    torch.manual_seed(4)
    tau = 0.07
    q, p, n = torch.randn(4, 6), torch.randn(4, 6), torch.randn(3, 6)
    owner = torch.tensor(PAIR_OWNER)
    fn = false_negative_mask(PAIR_QUERIES, PAIR_POSITIVES, PAIR_NEGATIVES)
    for mask in (None, fn):
        expected = brute_contrastive(
            q,
            p,
            n,
            PAIR_OWNER,
            in_batch,
            (mask if mask is not None else torch.zeros(4, 7, dtype=torch.bool)).tolist(),
            tau,
            symmetric,
        )
        got, _ = contrastive_loss_flat(
            q,
            p,
            n,
            owner,
            temperature=tau,
            in_batch=torch.tensor(in_batch),
            symmetric=symmetric,
            false_negative_mask=mask,
        )
        assert float(got) == pytest.approx(expected, rel=1e-5), mask is not None


def test_symmetric_term_follows_the_in_batch_switch():
    """No in-batch negatives: each positive sees only its own query, so the backward term is zero."""
    torch.manual_seed(5)
    q, p = torch.randn(3, 4), torch.randn(3, 4)
    forward = float(contrastive_loss(q, p, temperature=0.1, in_batch=False))
    assert forward == pytest.approx(0.0, abs=1e-6)
    assert float(contrastive_loss(q, p, temperature=0.1, in_batch=False, symmetric=True)) == pytest.approx(
        0.0, abs=1e-6
    )


def test_flops_is_the_sum_of_squared_mean_absolute_weights_by_hand():
    from embedlab.train.losses import flops, flops_penalty, flops_weight

    x = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])  # column means of |x|: 2, 0, 1
    assert float(flops(x)) == pytest.approx(2.0**2 + 0.0 + 1.0**2)
    neg = torch.tensor([[0.0, 4.0, 0.0]])  # FLOPS 16
    q = torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]])  # means of |q|: 1, 1, 0 -> 2
    # λ_q·FLOPS(q) + λ_d·(FLOPS(p) + FLOPS(n))/2, naver/splade's document term
    assert float(flops_penalty(q, x, neg, 0.5, 0.1)) == pytest.approx(0.5 * 2 + 0.1 * (5 + 16) / 2)
    assert float(flops_penalty(q, x, None, 0.5, 0.1)) == pytest.approx(0.5 * 2 + 0.1 * 5)
    # quadratic warm-up: λ (t/T)² up to T, then λ
    assert flops_weight(0.4, 5, 10) == pytest.approx(0.1) and flops_weight(0.4, 0, 10) == 0.0
    assert flops_weight(0.4, 10, 10) == 0.4 and flops_weight(0.4, 99, 10) == 0.4 and flops_weight(0.4, 3, 0) == 0.4


def test_dot_similarity_scores_raw_dot_products():
    q = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    p = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    loss, _ = contrastive_loss_flat(q, p, temperature=1.0, similarity="dot", false_negative_mask=None)
    logits = q @ p.T  # [[2, 3], [0, 3]] by hand
    expected = (-(2 - math.log(math.exp(2) + math.exp(3))) - (3 - math.log(1 + math.exp(3)))) / 2
    assert float(loss) == pytest.approx(expected) and logits[0, 1] == 3
    with pytest.raises(EmbedlabError, match="cosine or dot"):
        contrastive_loss_flat(q, p, similarity="l2")
