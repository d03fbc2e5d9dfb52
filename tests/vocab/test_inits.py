"""Each initialisation's defining property, checked against hand computation or an independent solver
(scipy's linprog for convex-hull membership), and tied embeddings staying tied."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedlab.errors import ConfigError
from embedlab.vocab.extend import extend_tokenizer, resize_and_init
from embedlab.vocab.inits import (
    CW2VTables,
    InitContext,
    cw2v_support,
    init_cw2v,
    init_fvt,
    init_mean,
    init_multivariate,
    init_random,
    init_wechsel,
    sgns_pairs,
)
from embedlab.vocab.selection import Candidate, forms_from_surface
from tests.vocab._tokenizers import make_bpe, make_wordpiece

CORPUS = ["abc de abc xy the cat", "the cat sat abc de", "abc de sat the", "xy abc the cat de"] * 5


def _in_hull(points: np.ndarray, x: np.ndarray) -> bool:
    """x = Σ λᵢ pᵢ with λ >= 0, Σ λ = 1 feasible (an LP solved by scipy, independent of the code under test)."""
    from scipy.optimize import linprog

    n = len(points)
    a_eq = np.vstack([points.T, np.ones((1, n))])
    b_eq = np.concatenate([x, [1.0]])
    res = linprog(np.zeros(n), A_eq=a_eq, b_eq=b_eq, bounds=[(0, None)] * n, method="highs")
    return res.status == 0


def _ctx(tok, ext=None, surfaces=None, **kw):
    if ext is not None:
        kw.setdefault("new_tokenizer", ext.tokenizer)
        return InitContext(
            old_tokenizer=tok,
            surfaces=[t.surface for t in ext.added],
            continuation=[t.continuation for t in ext.added],
            new_ids=ext.new_ids,
            **kw,
        )
    return InitContext(
        old_tokenizer=tok,
        surfaces=surfaces,
        continuation=[False] * len(surfaces),
        new_ids=list(range(len(surfaces))),
        **kw,
    )


def _old(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d))).float()


def test_mean_is_the_centroid():
    old = _old(50)
    rows = init_mean(old, _ctx(None, surfaces=["x", "y"]))
    expected = old.double().numpy().mean(0)
    np.testing.assert_allclose(rows.numpy(), np.stack([expected, expected]), rtol=1e-6)


def test_multivariate_matches_the_rows_mean_and_covariance():
    rng = np.random.default_rng(1)
    mix = np.array([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, -0.3, 0.2]])
    old = torch.from_numpy(rng.normal(size=(4000, 3)) @ mix + np.array([1.0, -2.0, 0.5]))
    mu, sigma = old.numpy().mean(0), np.cov(old.numpy(), rowvar=False)
    draws = init_multivariate(old, _ctx(None, surfaces=["t"] * 20000, options={"scale": 1.0})).numpy()
    np.testing.assert_allclose(draws.mean(0), mu, atol=0.05)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), sigma, atol=0.08)
    small = init_multivariate(old, _ctx(None, surfaces=["t"] * 20000)).numpy()  # Mundra/Hewitt: 1e-5 Σ
    np.testing.assert_allclose(np.cov(small, rowvar=False) / 1e-5, sigma, atol=0.08)
    with pytest.raises(ConfigError, match="scale"):
        init_multivariate(old, _ctx(None, surfaces=["t"], options={"scale": -1}))


def test_random_is_the_models_own_init():
    from transformers import BertConfig, BertModel

    model = BertModel(
        BertConfig(
            vocab_size=40,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=32,
            initializer_range=0.5,
        )
    )
    old = model.get_input_embeddings().weight.detach()
    ctx = _ctx(None, surfaces=["t"] * 3000, model=model, seed=3)
    rows = init_random(old, ctx).numpy()
    assert abs(rows.std() - 0.5) < 0.01 and abs(rows.mean()) < 0.01  # BERT: N(0, initializer_range^2)
    np.testing.assert_array_equal(
        rows, init_random(old, _ctx(None, surfaces=["t"] * 3000, model=model, seed=3)).numpy()
    )


def test_fvt_rows_are_the_mean_of_the_old_pieces():
    tok = make_wordpiece()
    ext = extend_tokenizer(tok, [Candidate("abc", 3, 3), Candidate("##xy", 1, 2)])
    old = _old(len(tok))
    rows = init_fvt(old, _ctx(tok, ext)).numpy()
    v = tok.get_vocab()
    np.testing.assert_allclose(rows[0], old[[v["a"], v["##b"], v["##c"]]].mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(rows[1], old[[v["##x"], v["##y"]]].mean(0).numpy(), rtol=1e-6)  # continuation pieces


def test_fvt_on_byte_level_bpe_uses_the_spaced_string():
    tok = make_bpe(262)
    ext = extend_tokenizer(tok, forms_from_surface(tok, ["mitochondria"]))
    old = _old(len(tok))
    target = next(i for i, t in enumerate(ext.added) if t.form == "Ġmitochondria")
    pieces = tok(" mitochondria", add_special_tokens=False)["input_ids"]
    assert len(pieces) >= 3
    rows = init_fvt(old, _ctx(tok, ext)).numpy()
    np.testing.assert_allclose(rows[target], old[pieces].mean(0).numpy(), rtol=1e-6)


def test_cw2v_rows_lie_in_the_convex_hull_and_training_lowers_the_loss():
    tok = make_wordpiece()
    ext = extend_tokenizer(tok, [Candidate("abc", 3, 3), Candidate("de", 4, 2), Candidate("xy", 2, 2)])
    old = _old(len(tok), d=6)
    ctx = _ctx(
        tok, ext, corpus=CORPUS, options={"steps": 80, "rank": 4, "batch": 64, "lr": 0.05, "subsample": 0}
    )  # a 20-text corpus: keep every token
    rows = init_cw2v(old, ctx)
    w = ctx.info["weights"].numpy()
    assert (w >= 0).all() and np.allclose(w.sum(1), 1.0)
    for r in rows.double().numpy():
        assert _in_hull(old.double().numpy(), r)
    assert not _in_hull(old.double().numpy(), rows.double().numpy()[0] + 10.0)  # the LP can say no
    assert ctx.info["pairs"] > 0 and ctx.info["loss_last"] < ctx.info["loss_first"]
    assert not np.allclose(rows[0].numpy(), rows[1].numpy())  # trained apart, not all at the centroid


def test_wechsel_mixes_the_nearest_old_tokens():
    tok = make_wordpiece()
    ext = extend_tokenizer(tok, [Candidate("abc", 3, 3), Candidate("de", 4, 2)])
    old = _old(len(tok), d=6)
    opts = {"dim": 16, "epochs": 3, "min_count": 1, "workers": 1}
    rows = init_wechsel(old, _ctx(tok, ext, corpus=CORPUS, options=opts)).double().numpy()
    for r in rows:
        assert _in_hull(old.double().numpy(), r)
    one = init_wechsel(old, _ctx(tok, ext, corpus=CORPUS, options={**opts, "k": 1})).double().numpy()
    for r in one:  # k = 1: exactly one old row
        assert np.isclose(np.abs(old.double().numpy() - r).sum(1), 0, atol=1e-6).sum() >= 1


@pytest.mark.parametrize("tied", [True, False])
def test_resize_keeps_tied_embeddings_tied_and_old_rows_exact(tied):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_bpe(262)
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            tie_word_embeddings=tied,
        )
    )
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    ext = extend_tokenizer(tok, forms_from_surface(tok, ["mitochondria", "ribosomes"]))
    info = resize_and_init(model, ext, "mean", old_tokenizer=tok)
    w_in, w_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert w_in.shape[0] == w_out.shape[0] == len(ext.tokenizer)
    assert info["tied_output"] is tied
    assert (w_in.data_ptr() == w_out.data_ptr()) is tied
    torch.testing.assert_close(w_in[: len(tok)], old_in, rtol=0, atol=0)  # old rows bit-exact
    torch.testing.assert_close(w_in[len(tok) :], old_in.mean(0).expand(len(ext.added), -1))
    if not tied:
        torch.testing.assert_close(w_out[: len(tok)], old_out, rtol=0, atol=0)
        torch.testing.assert_close(w_out[len(tok) :], old_out.mean(0).expand(len(ext.added), -1))  # its own centroid
    ids = ext.tokenizer(" mitochondria", return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape[-1] == len(ext.tokenizer)


def test_cw2v_untied_trains_a_second_factorisation():
    tok = make_wordpiece()
    ext = extend_tokenizer(tok, [Candidate("abc", 3, 3), Candidate("de", 4, 2)])
    old, out = _old(len(tok), d=6), _old(len(tok), d=6, seed=5)
    ctx = _ctx(tok, ext, corpus=CORPUS, options={"steps": 20, "rank": 4, "batch": 32})
    rows_in, rows_out = init_cw2v(old, ctx, out)
    for r in rows_out.double().numpy():
        assert _in_hull(out.double().numpy(), r)
    assert rows_in.shape == rows_out.shape == (2, 6)


# -- CW2V: the pairs, the support, the tables, the start (issue 22.13) -----------------------------
def test_sgns_pairs_never_cross_a_document_boundary():
    ids = np.array([0, 1, 2, -1, 3, 4, 5, -1])  # documents [0 1 2] | [3 4 5]
    got = sgns_pairs(ids, np.ones(6, dtype=bool), window=5, rng=np.random.default_rng(0), subsample=0)
    expected = {(a, b) for doc in ((0, 1, 2), (3, 4, 5)) for a in doc for b in doc if a != b}  # 12 pairs, by hand
    assert sorted(map(tuple, got.tolist())) == sorted(expected)
    # only pairs touching a new token: with 4 new, the document [0 1 2] gives none
    is_new = np.array([False, False, False, False, True, False])
    got = sgns_pairs(ids, is_new, window=2, rng=np.random.default_rng(0), subsample=0)
    assert sorted(map(tuple, got.tolist())) == [(3, 4), (4, 3), (4, 5), (5, 4)]


def test_cw2v_support_starts_with_the_pieces_then_old_tokenizer_frequency():
    old_counts = np.array([5, 0, 3, 9, 1, 0])
    # pieces first (deduplicated, in order), then by count under the old tokenizer, special id 0 excluded
    assert cw2v_support(old_counts, [[1], [4, 1]], 4, exclude={0}).tolist() == [1, 4, 3, 2]
    assert cw2v_support(old_counts, [[1, 5], [4]], 2, exclude={0}).tolist() == [1, 5, 4]  # the pieces all stay


def test_cw2v_support_holds_the_pieces_the_new_tokens_replace():
    tok = make_wordpiece()
    ext = extend_tokenizer(tok, [Candidate("abc", 3, 3), Candidate("xy", 2, 2)])
    old = _old(len(tok), d=6)
    ctx = _ctx(tok, ext, corpus=CORPUS, options={"steps": 2, "rank": 4, "batch": 16, "support": 3})
    init_cw2v(old, ctx)
    v = tok.get_vocab()
    support = set(ctx.info["support_ids"].tolist())
    # under the new tokenizer ##b, ##c, ##y never occur (abc, xy are one token now): the support must still hold them
    assert {v["a"], v["##b"], v["##c"], v["x"], v["##y"]} <= support
    assert not support & set(tok.all_special_ids)


def test_cw2v_tied_center_and_context_read_one_table_untied_two():
    rng = np.random.default_rng(0)
    e_in, e_out = (torch.from_numpy(rng.normal(size=(5, 3))).float() for _ in range(2))
    support, local = np.array([0, 1, 2]), np.array([-1, -1, -1, -1, -1, 0, 1])  # ids 5, 6 are new
    tok = torch.tensor([5, 6, 3])
    tied = CW2VTables([e_in], support, local, 2, rank=2)
    torch.testing.assert_close(tied.center(tok), tied.context(tok))
    untied = CW2VTables([e_in, e_out], support, local, 2, rank=2)
    w_out = untied.weights(1, torch.arange(2)).detach().numpy()
    np.testing.assert_allclose(untied.context(tok).detach().numpy()[:2], w_out @ e_out.numpy()[:3], rtol=1e-5)
    np.testing.assert_allclose(untied.context(tok).detach().numpy()[2], e_out.numpy()[3])  # an old id: the frozen row
    np.testing.assert_allclose(untied.center(tok).detach().numpy()[2], e_in.numpy()[3])
    # the loss, by hand: -log s(w_c . v_o) - sum_n log s(-w_c . v_n)
    c, pos, neg = torch.tensor([5]), torch.tensor([3]), torch.tensor([[0, 6]])
    w = untied.center(c).detach().numpy()[0]
    v = untied.context(torch.tensor([3, 0, 6])).detach().numpy()
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = -np.log(sig(w @ v[0])) - np.log(sig(-(w @ v[1]))) - np.log(sig(-(w @ v[2])))
    assert float(untied.sgns_loss(c, pos, neg).detach()) == pytest.approx(expected, rel=1e-5)


def test_cw2v_rows_do_not_start_at_the_supports_centroid():
    tok = make_wordpiece()
    ext = extend_tokenizer(tok, [Candidate("abc", 3, 3), Candidate("de", 4, 2), Candidate("xy", 2, 2)])
    old = _old(len(tok), d=6)

    def rows_and_support(**opts):
        ctx = _ctx(tok, ext, corpus=CORPUS, options={"steps": 1, "rank": 4, "batch": 8, **opts})
        return init_cw2v(old, ctx).double().numpy(), old.double().numpy()[ctx.info["support_ids"]], ctx.info

    rows, base, info = rows_and_support()  # one step: (nearly) the start
    centroid = base.mean(0)
    spread = np.linalg.norm(base - centroid, axis=1).mean()
    assert (np.linalg.norm(rows - centroid, axis=1) > 0.3 * spread).all()  # the paper's rand init: peaked weights
    assert info["centroid_distance"] == pytest.approx(np.linalg.norm(rows - centroid, axis=1).mean() / spread, rel=1e-6)
    small, base, _ = rows_and_support(init="small")  # the old start: every row at the centroid
    assert (np.linalg.norm(small - base.mean(0), axis=1) < 0.05 * spread).all()
    with pytest.raises(ConfigError, match="init"):
        rows_and_support(init="zeros")
