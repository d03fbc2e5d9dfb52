"""The debiasing module in an embedder chain: projected vectors, sentence-transformers loading, the
embedlab commands on a debiased model, and `embedlab bias` (tiny random models; minilm-l6 marked slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embedlab.analysis import bias
from embedlab.errors import ConfigError
from embedlab.models import Embedder
from embedlab.models.debias import DEBIAS_FILE, DebiasProjection, debias_embedder

from ..conftest import run_cli

TEXTS = ["the cat sat on the mat", "he read a book", "she wrote code", "why is the sky blue"]
D = 32


def _basis(k: int = 1, d: int = D, seed: int = 0) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, k)))[0].T


@pytest.fixture()
def base(tiny_bert):
    return Embedder.from_pretrained(tiny_bert, pooling="mean")


@pytest.mark.parametrize("k", [1, 3])
def test_debiased_vectors_are_the_renormalised_projection(base, tiny_bert, k):
    B = _basis(k)
    emb = debias_embedder(base, B)
    assert [m.kind for m in emb.chain] == ["transformer", "pooling", "debias", "normalize"]
    raw = Embedder.from_pretrained(tiny_bert, pooling="mean", normalize=False).encode(TEXTS).astype(np.float64)
    proj = raw - (raw @ B.T) @ B
    expected = proj / np.linalg.norm(proj, axis=1, keepdims=True)
    got = emb.encode(TEXTS)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got @ B.T).max() < 1e-6
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    assert not any(p.requires_grad for p in emb.chain[2].parameters())


def test_without_renormalisation_the_projection_goes_last(tiny_bert):
    emb = Embedder.from_pretrained(tiny_bert, pooling="mean", normalize=False)
    B = _basis()
    out = debias_embedder(emb, B, renormalize=False)
    assert [m.kind for m in out.chain] == ["transformer", "pooling", "debias"]
    before = emb.encode(TEXTS).astype(np.float64)
    np.testing.assert_allclose(out.encode(TEXTS), before - (before @ B.T) @ B, atol=1e-5)
    again = debias_embedder(emb, B, renormalize=True)
    assert [m.kind for m in again.chain] == ["transformer", "pooling", "debias", "normalize"]


def test_debiased_model_loads_in_sentence_transformers_and_embedlab(base, tmp_path):
    from sentence_transformers import SentenceTransformer

    B = _basis(2)
    emb = debias_embedder(base, B, info={"k": 2})
    emb.save(tmp_path / "m")
    entries = json.loads((tmp_path / "m" / "modules.json").read_text())
    assert entries[2]["type"] == "sentence_transformers.base.modules.dense.Dense"
    assert (tmp_path / "m" / "2_Dense" / DEBIAS_FILE).is_file()
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    st_vecs = st.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(st_vecs, emb.encode(TEXTS), atol=2e-5)
    assert np.abs(st_vecs @ B.T).max() < 1e-5  # sentence-transformers gives the projected vectors
    again = Embedder.from_pretrained(tmp_path / "m")
    assert [m.kind for m in again.chain] == ["transformer", "pooling", "projection", "normalize"]  # read by type: Dense
    np.testing.assert_array_equal(again.encode(TEXTS), emb.encode(TEXTS))
    module = DebiasProjection.load(tmp_path / "m" / "2_Dense")
    np.testing.assert_allclose(module.basis.numpy(), B, atol=1e-6)
    assert module.info == {"k": 2}


def test_tampered_weights_or_bad_basis_are_refused(tmp_path):
    m = DebiasProjection(_basis())
    m.save(tmp_path / "d")
    side = json.loads((tmp_path / "d" / DEBIAS_FILE).read_text())
    side["basis"] = _basis(seed=1).tolist()
    (tmp_path / "d" / DEBIAS_FILE).write_text(json.dumps(side))
    with pytest.raises(ConfigError, match="not the projection of the saved basis"):
        DebiasProjection.load(tmp_path / "d")
    with pytest.raises(ConfigError, match="orthonormal"):
        DebiasProjection(np.ones((1, 4)))
    with pytest.raises(ConfigError, match="would remove all"):
        DebiasProjection(np.eye(3))
    with pytest.raises(ConfigError, match="k x d matrix"):
        DebiasProjection([1.0, 0.0])


def test_basis_of_the_wrong_width_is_refused(base):
    with pytest.raises(ConfigError, match="the basis is 16-d, the model outputs 32-d"):
        debias_embedder(base, _basis(d=16))


def test_subspace_from_an_embedder_then_debias_removes_direct_bias(base):
    lists = {
        "definitional_pairs": [["she", "he"], ["her", "his"]],
        "gender_specific_full": ["he", "she"],
        "professions": ["model", "data", "the_cat"],
    }
    rep = bias.direction_report(base, lists)
    assert rep["neutral_words"] == 3 and rep["direct_bias"] > 0
    assert sum(rep["explained_variance_ratio"]) == pytest.approx(1.0)
    out = debias_embedder(base, rep["subspace"].basis)
    after = bias.direction_report(out, lists, subspace=rep["subspace"])
    assert after["direct_bias"] < 1e-5


def _lists(tmp_path):
    d = tmp_path / "lists"
    d.mkdir()
    data = {
        "definitional_pairs": [["she", "he"], ["her", "his"]],
        "equalize_pairs": [["he", "she"]],
        "gender_specific_seed": ["he", "she"],
        "gender_specific_full": ["he", "she", "her", "his"],
        "professions": [["model", 0, 0], ["data", 0, 0.1], ["book", 0, 0]],
    }
    for name, value in data.items():
        (d / f"{name}.json").write_text(json.dumps(value))
    return d


def test_cli_debias_then_report_compare_and_commands_on_the_debiased_model(tiny_bert, tmp_path, monkeypatch, capsys):
    lists = _lists(tmp_path)
    out_dir = tmp_path / "deb"
    code, _, err = run_cli(
        monkeypatch, capsys, "bias", "debias", tiny_bert, "--out", out_dir, "--lists", lists, "--pooling", "mean"
    )
    assert code == 0, err
    assert "DirectBias over 3 professions" in err and (out_dir / "modules.json").is_file()
    tests = tmp_path / "t.yaml"
    tests.write_text("X: [cat, dog]\nY: [car, tree]\nA: [he, him]\nB: [she, her]\n")
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "bias",
        "report",
        tiny_bert,
        "--pooling",
        "mean",
        "--tests",
        tests,
        "--compare",
        out_dir,
        "--json",
        tmp_path / "r.json",
        "--png",
        tmp_path / "r.png",
    )
    assert code == 0, err
    saved = json.loads((tmp_path / "r.json").read_text())
    assert list(saved["results"]) == [tiny_bert.as_posix(), out_dir.as_posix()] and saved["modes"] == ["weat", "seat"]
    first = saved["results"][tiny_bert.as_posix()][0]
    assert first["p_method"] == "exact" and first["permutations"] == 6 and (tmp_path / "r.png").stat().st_size > 0
    assert "WEAT" in out and "SEAT" in out
    # the debiased model works with the other commands
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    code, _, err = run_cli(monkeypatch, capsys, "encode", "-m", out_dir, "-i", src, "-o", tmp_path / "v.npy")
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), Embedder.from_pretrained(out_dir).encode(TEXTS), atol=1e-6)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "index",
        "build",
        "-m",
        out_dir,
        "--corpus",
        corpus,
        "--codec",
        "float32",
        "--out",
        tmp_path / "ix",
    )
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "search", tmp_path / "ix", "he read a book", "-k", "1", "--json")
    assert code == 0 and '"id": "1"' in out, err


def test_cli_direction_and_bad_input_are_one_line_errors(tiny_bert, tmp_path, monkeypatch, capsys):
    lists = _lists(tmp_path)
    code, out, err = run_cli(
        monkeypatch, capsys, "bias", "direction", tiny_bert, "--lists", lists, "--json", tmp_path / "d.json"
    )
    assert code == 0, err
    assert "variance explained" in out and "DirectBias_1 over 3" in out
    assert json.loads((tmp_path / "d.json").read_text())["subspace"]["k"] == 1
    same = tmp_path / "same.json"
    same.write_text(json.dumps([["he", "he"], ["she", "she"]]))
    code, _, err = run_cli(monkeypatch, capsys, "bias", "direction", tiny_bert, "--lists", lists, "--pairs", same)
    assert code == 1 and "degenerate bias subspace" in err and "Traceback" not in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"X": ["a"], "Y": ["b"], "A": ["c", "d"], "B": ["e", "f"]}))
    code, _, err = run_cli(monkeypatch, capsys, "bias", "report", tiny_bert, "--tests", bad)
    assert code == 1 and "at least 2 words" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(monkeypatch, capsys, "bias", "report", tiny_bert, "--tests", "weat42")
    assert code == 2 and "unknown bias test" in err  # a usage error
    code, _, err = run_cli(monkeypatch, capsys, "bias", "direction", tiny_bert, "--lists", tmp_path / "nowhere")
    assert code == 1 and "debiaswe list missing" in err


def test_cli_static_vectors_report_missing_words(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    words = ["cat", "dog", "car", "tree", "he", "him", "she", "her"]
    vec = tmp_path / "w.txt"
    vec.write_text("".join(f"{w} " + " ".join(f"{x:.4f}" for x in rng.normal(size=6)) + "\n" for w in words))
    tests = tmp_path / "t.json"
    tests.write_text(
        json.dumps({"X": ["cat", "dog", "zebra"], "Y": ["car", "tree", "bus"], "A": ["he", "him"], "B": ["she", "her"]})
    )
    code, out, err = run_cli(monkeypatch, capsys, "bias", "weat", vec, "--tests", tests)
    assert code == 0, err
    assert "skipped (not in the vocabulary) X: 1, Y: 1" in err
    code, out, err = run_cli(monkeypatch, capsys, "bias", "report", vec, "--tests", tests)
    assert code == 0 and "WEAT only" in err and "SEAT" not in out, err
    code, _, err = run_cli(monkeypatch, capsys, "bias", "seat", vec, "--tests", tests)
    assert code == 1 and "static word vectors support WEAT only" in err


@pytest.mark.slow
def test_minilm_seat_is_finite_and_deterministic_and_debias_removes_direction(tmp_path):
    from sentence_transformers import SentenceTransformer

    emb = Embedder.from_pretrained("minilm-l6")
    t = bias.builtin_tests()["weat6"]
    r1 = bias.run_test(emb, t, mode="seat", n_random=5000, seed=1)
    r2 = bias.run_test(emb, t, mode="seat", n_random=5000, seed=1)
    assert np.isfinite(r1.effect_size) and r1.p_method == "random" and r1.p_value == r2.p_value
    lists = bias.debiaswe_lists()
    rep = bias.direction_report(emb, lists)
    out = debias_embedder(emb, rep["subspace"].basis)
    out.save(tmp_path / "m")
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    words = bias.neutral_words(lists)[:50]
    v = st.encode(words, convert_to_numpy=True)
    assert np.abs(v @ rep["subspace"].basis.T).max() < 1e-5
    torch.testing.assert_close(torch.as_tensor(v), torch.as_tensor(out.encode(words)), atol=2e-5, rtol=0)


def test_saved_debiased_model_serves_the_projected_vectors(base, tmp_path):
    """A debiased model, saved and loaded back, runs in `embedlab serve`: /v1/embeddings gives the same
    vectors as encode, with no component in the removed subspace."""
    import httpx

    from embedlab.serve import BackgroundServer, build_app

    B = _basis(1)
    debias_embedder(base, B).save(tmp_path / "m")
    ref = Embedder.from_pretrained(tmp_path / "m").encode(TEXTS)
    with BackgroundServer(build_app(str(tmp_path / "m"), dtype="fp32", device="cpu")) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS}, timeout=30)
    assert r.status_code == 200, r.text
    got = np.array([d["embedding"] for d in r.json()["data"]])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.abs(got @ B.T).max() < 1e-5
