"""Static distillation: token sequences through the teacher's chain, PCA and weights hand-checked, the
static model's numpy and torch paths, and the model2vec / sentence-transformers round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import embedlab
from embedlab.errors import ConfigError, InputError
from embedlab.models import Embedder
from embedlab.models.static import (
    StaticSource,
    distill,
    emittable_tokens,
    is_static_dir,
    load_static,
    pca_reduce,
    sif_weights,
    token_counts,
    token_sequences,
    token_vectors,
    zipf_weights,
)
from tests.conftest import SPECIAL, WORDS, run_cli

TEXTS = ["the cat sat on the mat", "a dog ran fast", "why is the sky blue", "the", "the the the cat"]
VOCAB = {tok: i for i, tok in enumerate(SPECIAL + WORDS)}  # the tiny tokenizers' ids


@pytest.fixture(scope="module")
def teacher(tiny_bert):
    return embedlab.load(str(tiny_bert), prompts={"find": "find similar "})


@pytest.fixture(scope="module")
def student(teacher):
    model, provenance = distill(teacher, dims=8)
    return model, provenance


@pytest.fixture(scope="module")
def saved(student, tmp_path_factory):
    path = tmp_path_factory.mktemp("static") / "m2v"
    student[0].save(path, provenance=student[1])
    return path


# -- the teacher's pass ------------------------------------------------------------------------
def test_token_sequences_wrap_each_token_in_the_teachers_special_tokens_and_prompt(teacher):
    seqs, plen = token_sequences(teacher)
    cls, sep = VOCAB["[CLS]"], VOCAB["[SEP]"]
    assert len(seqs) == len(VOCAB) and plen == 0
    assert seqs[VOCAB["cat"]] == [cls, VOCAB["cat"], sep]
    seqs, plen = token_sequences(teacher, "find similar ")
    assert seqs[VOCAB["cat"]] == [cls, VOCAB["find"], VOCAB["similar"], VOCAB["cat"], sep]
    assert plen == 3  # [CLS] and the prompt's two tokens, as embedlab.tokenize counts a prompt


def test_token_sequences_of_a_decoder_append_eos(tiny_llama):
    teacher = embedlab.load(str(tiny_llama), pooling="last_token")
    assert teacher.append_eos
    seqs, _ = token_sequences(teacher)
    assert seqs[VOCAB["cat"]] == [VOCAB["cat"], VOCAB["</s>"]]


@pytest.mark.parametrize("prompt_name", [None, "find"])
def test_token_vectors_equal_the_teachers_own_encoding_of_each_word(tiny_bert, prompt_name):
    """Independent path: Embedder.encode of the word (with the prompt) and no normalisation."""
    teacher = embedlab.load(
        str(tiny_bert),
        prompts={"find": "find similar "},
        normalize=False,
        pooling_options={"exclude_instruction": True},
    )
    vectors = token_vectors(teacher, prompt_name=prompt_name)
    words = ["cat", "river", "the", "why"]
    ref = teacher.encode(words, prompt_name=prompt_name)
    np.testing.assert_allclose(vectors[[VOCAB[w] for w in words]], ref, atol=1e-5)
    # the final L2 normalisation of the teacher is left out, the rest of its chain is not
    normed = embedlab.load(str(tiny_bert))
    np.testing.assert_allclose(
        token_vectors(normed)[[VOCAB[w] for w in words]],
        normed.encode(words)
        * np.linalg.norm(teacher.encode(words), axis=1, keepdims=True)
        / np.linalg.norm(normed.encode(words), axis=1, keepdims=True),
        atol=1e-5,
    )


def test_bidirectional_decoder_with_mean_pooling_is_distilled_through_its_attention_mode(tiny_llama):
    causal = embedlab.load(str(tiny_llama), pooling="mean", attention="causal", normalize=False)
    bidi = embedlab.load(str(tiny_llama), pooling="mean", attention="bidirectional", normalize=False)
    words = ["cat", "dog"]
    for teacher in (causal, bidi):
        np.testing.assert_allclose(token_vectors(teacher)[[VOCAB[w] for w in words]], teacher.encode(words), atol=1e-5)


def test_a_trainable_multi_layer_head_and_projection_are_in_every_row(tiny_llama):
    """The grid's Model 5 chain (multi-layer head over a bidirectional decoder, EOS appended, a linear
    projection after it): each row is the chain's own (unnormalised) encoding of the word."""
    from embedlab.models.modules import Projection

    torch.manual_seed(0)
    base = embedlab.load(
        str(tiny_llama), pooling="multi_layer", attention="bidirectional", append_eos=True, normalize=False
    )
    projection = Projection(base.output_dim, base.output_dim)
    teacher = base.with_modules([*base.chain, projection])
    words = ["cat", "dog", "river"]
    ids = [VOCAB[w] for w in words]
    ref = teacher.encode(words)
    np.testing.assert_allclose(token_vectors(teacher)[ids], ref, atol=1e-5)
    # a resumable part: only the asked rows, in the asked order
    np.testing.assert_allclose(token_vectors(teacher, rows=ids[::-1]), ref[::-1], atol=1e-5)
    with pytest.raises(ConfigError, match="token rows"):
        token_vectors(teacher, rows=[len(VOCAB)])


# -- PCA and weights, by hand ----------------------------------------------------------------------
def test_pca_on_a_line_gives_the_signed_distance_along_it():
    t = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    x = np.stack([t + 3, t + 3, np.zeros(5)], axis=1)  # points on the (1, 1, 0) line through (3, 3, 0)
    reduced, explained = pca_reduce(x, 1)
    expected = t * np.sqrt(2)
    sign = np.sign(reduced[0, 0]) * np.sign(expected[0])
    np.testing.assert_allclose(reduced[:, 0] * sign, expected, atol=1e-6)
    assert explained == pytest.approx(1.0)


def test_pca_matches_an_eigendecomposition_of_the_covariance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    reduced, explained = pca_reduce(x, 3)
    centred = x - x.mean(axis=0)
    vals, vecs = np.linalg.eigh(np.cov(centred, rowvar=False))
    order = np.argsort(vals)[::-1][:3]
    ref = centred @ vecs[:, order]
    signs = np.sign((reduced * ref).sum(axis=0))
    np.testing.assert_allclose(reduced * signs, ref, atol=1e-4)
    assert explained == pytest.approx(vals[order].sum() / vals.sum(), rel=1e-6)
    rows = np.arange(200) % 3 != 0  # fitted on some rows, applied to all
    part, _ = pca_reduce(x, 2, fit_rows=rows)
    mean = x[rows].mean(axis=0)
    vals, vecs = np.linalg.eigh(np.cov(x[rows] - mean, rowvar=False))
    ref = (x - mean) @ vecs[:, np.argsort(vals)[::-1][:2]]
    np.testing.assert_allclose(part * np.sign((part * ref).sum(axis=0)), ref, atol=1e-4)
    full, ratio = pca_reduce(x, 6)  # same width: a rotation, distances kept
    assert ratio == pytest.approx(1.0)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), np.linalg.norm(centred, axis=1), rtol=1e-4)


def test_zipf_weights_by_hand():
    # p_r = (1/(r+2)) / (1/2 + 1/3 + 1/4) = 6/13, 4/13, 3/13; w = a / (a + p)
    w = zipf_weights(3, 0.1)
    np.testing.assert_allclose(w, [0.1 / (0.1 + 6 / 13), 0.1 / (0.1 + 4 / 13), 0.1 / (0.1 + 3 / 13)])
    assert np.all(np.diff(zipf_weights(1000)) > 0)  # rarer (later) tokens weigh more


def test_zipf_ranks_only_the_tokens_a_text_can_produce():
    w = zipf_weights(5, 0.1, ranked=np.array([False, True, False, True, True]))
    np.testing.assert_allclose(w[[1, 3, 4]], zipf_weights(3, 0.1))
    assert w[0] == w[2] == 1.0


def test_emittable_tokens_drop_specials_and_wordpiece_entries_no_text_produces():
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    vocab = {
        "[PAD]": 0,
        "[UNK]": 1,
        "[CLS]": 2,
        "[unused0]": 3,
        "the": 4,
        "##ing": 5,
        "!": 6,
        "é": 7,
        "e": 8,
        "sing": 9,
    }
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = BertNormalizer(lowercase=True)  # strips accents: "é" can never come out whole
    tok.pre_tokenizer = BertPreTokenizer()
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]"])
    mask = emittable_tokens(tok)
    assert [t for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if mask[i]] == ["the", "##ing", "!", "e", "sing"]
    assert tok.encode("the singing !", add_special_tokens=False).ids == [4, 9, 5, 6]  # "##ing" does come out


def test_sif_weights_by_hand_and_counts_from_the_tokenizer(teacher):
    np.testing.assert_allclose(sif_weights(np.array([2, 1, 1, 0]), 0.5), [0.5, 2 / 3, 2 / 3, 1.0])
    from embedlab.models.static import backend_tokenizer

    counts = token_counts(backend_tokenizer(teacher.tokenizer), ["the cat", "the dog zzz"], len(VOCAB))
    assert counts[VOCAB["the"]] == 2 and counts[VOCAB["cat"]] == 1 and counts[VOCAB["[UNK]"]] == 1
    assert counts[VOCAB["[CLS]"]] == 0 and counts.sum() == 5


def test_distilled_table_is_pca_then_zipf_weights_by_hand_and_encode_is_the_normalised_mean(teacher):
    """Independent of the code under test: a random (vocabulary x width) token table goes in as ``vectors``;
    the expected table is PCA by hand (numpy SVD of the centred emittable rows, applied to every row) times
    Zipf weights written out (a / (a + p_r), p_r proportional to 1 / (r + 2) over the emittable tokens in
    id order, weight 1 for the others), and encode is the L2-normalised mean of each text's rows."""
    rng = np.random.default_rng(7)
    n, width, dims, a = len(VOCAB), teacher.output_dim, 5, 1e-4
    vectors = (rng.normal(size=(n, width)) @ rng.normal(size=(width, width))).astype(np.float32)
    vectors[:, :3] += 4.0  # an offset: PCA must centre
    model, provenance = distill(teacher, dims=dims, vectors=vectors, normalize=True)
    emittable = np.array([t not in SPECIAL[:4] for t in VOCAB])  # the tiny BERT tokenizer's special (added) tokens
    assert (emittable_tokens(model.source.backend) == emittable).all()
    fit = vectors[emittable].astype(np.float64)
    mean = fit.mean(axis=0)
    _, singular, axes = np.linalg.svd(fit - mean, full_matrices=False)
    reduced = (vectors - mean) @ axes[:dims].T
    ranks = np.cumsum(emittable) - 1  # r = 0, 1, ... over the emittable tokens
    inverse = 1.0 / (np.arange(emittable.sum()) + 2)
    p = inverse[ranks] / inverse.sum()
    weights = np.where(emittable, a / (a + p), 1.0)
    expected = reduced * weights[:, None]
    table = model.source.table
    signs = np.sign((table * expected).sum(axis=0))  # a principal axis is defined up to its sign
    np.testing.assert_allclose(table * signs, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert provenance["explained_variance"] == pytest.approx(
        (singular[:dims] ** 2).sum() / (singular**2).sum(), abs=1e-6
    )
    # brute force: ids by hand, mean of rows, L2
    rows = [[VOCAB[w] for w in t.split()] for t in TEXTS]
    ref = np.stack([expected[r].mean(axis=0) for r in rows]) * signs
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(model.encode(TEXTS), ref, atol=1e-5)
    assert provenance["weighting"] == "zipf" and provenance["dims"] == dims and model.output_dim == dims


def test_sif_from_a_corpus_weights_frequent_tokens_down(teacher, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat\nthe dog\nthe bird\n")
    model, provenance = distill(teacher, dims=8, corpus=corpus, sif_coefficient=0.01)
    reduced, _ = pca_reduce(token_vectors(teacher), 8, fit_rows=emittable_tokens(model.source.backend))
    p_the, p_cat = 3 / 6, 1 / 6
    w = model.source.table[VOCAB["the"]] / reduced[VOCAB["the"]]
    np.testing.assert_allclose(w, 0.01 / (0.01 + p_the), rtol=1e-4)
    np.testing.assert_allclose(
        model.source.table[VOCAB["cat"]] / reduced[VOCAB["cat"]], 0.01 / (0.01 + p_cat), rtol=1e-4
    )
    np.testing.assert_allclose(model.source.table[VOCAB["river"]], reduced[VOCAB["river"]], rtol=1e-5)  # unseen: 1
    assert provenance["weighting"] == "sif" and provenance["corpus"]["tokens"] == 6


# -- the static model ------------------------------------------------------------------------------
def test_unknown_only_and_empty_texts_get_the_zero_vector(student):
    model, _ = student
    v = model.encode(["zzz qqq", "", "the"])
    assert np.isfinite(v).all()
    assert np.all(v[0] == 0) and np.all(v[1] == 0) and np.linalg.norm(v[2]) == pytest.approx(1.0)
    assert model.tokenize(["zzz the qqq"]).ids == [[VOCAB["the"]]]  # unknown tokens are dropped


def test_torch_chain_equals_numpy_encode(saved):
    """The server runs Embedder.tokenize -> batch_features -> forward; it must give encode's vectors."""
    model = embedlab.load(str(saved))
    texts = [*TEXTS, "", "zzz"]
    tok = model.tokenize(texts)
    with torch.inference_mode():
        out = model(model.batch_features(tok.ids, tok.prompt_lengths))["sentence_embedding"].numpy()
    np.testing.assert_allclose(out, model.encode(texts), atol=1e-6)
    with torch.inference_mode():  # a batch of only empty texts
        empty = model(model.batch_features([[], []]))["sentence_embedding"].numpy()
    assert np.all(empty == 0)


def test_load_save_round_trip_and_options(saved, student):
    assert is_static_dir(saved)
    model = embedlab.load(str(saved))
    assert type(model) is Embedder and isinstance(
        model.source, StaticSource
    )  # a plain chain, found through the registry
    assert model.normalize and model.attention is None
    np.testing.assert_allclose(model.encode(TEXTS), student[0].encode(TEXTS), atol=1e-6)
    provenance = json.loads((saved / "embedlab_static.json").read_text())
    assert provenance["dims"] == 8 and provenance["teacher_fingerprint"]
    # Matryoshka truncation and no normalisation, as for any model
    cut = embedlab.load(str(saved), dim=4, normalize=False)
    raw = embedlab.load(str(saved), normalize=False).encode(TEXTS)
    np.testing.assert_allclose(cut.encode(TEXTS), raw[:, :4], atol=1e-6)
    assert "static" in model.describe()["kind"]
    assert model.fingerprint() == embedlab.load(str(saved)).fingerprint() != cut.fingerprint()


def test_model2vec_loads_it_and_gives_the_same_vectors(saved, student, tmp_path):
    from model2vec import StaticModel

    long_text = " ".join(["the cat sat on the mat"] * 200)  # > 512 tokens: truncated alike
    texts = [*TEXTS, "zzz qqq", "", long_text, "the zzz cat"]
    m2v = StaticModel.from_pretrained(str(saved))
    ours = embedlab.load(str(saved)).encode(texts)
    np.testing.assert_allclose(m2v.encode(texts), ours, atol=1e-5)  # float32 sums in another order (512 rows)
    # a short max_length is saved and honoured by both
    short = tmp_path / "short"
    load_static(saved, max_length=3).save(short)
    np.testing.assert_allclose(
        StaticModel.from_pretrained(str(short)).encode(texts), embedlab.load(str(short)).encode(texts), atol=1e-6
    )
    assert not np.allclose(embedlab.load(str(short)).encode(TEXTS[:1]), ours[:1])
    # and a folder model2vec wrote is read by embedlab
    written = tmp_path / "by-model2vec"
    m2v.save_pretrained(str(written))
    np.testing.assert_allclose(embedlab.load(str(written)).encode(texts), ours, atol=1e-6)


def test_sentence_transformers_static_embedding_loads_it(saved, student):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(saved), device="cpu")
    assert type(st[0]).__name__ == "StaticEmbedding"
    np.testing.assert_allclose(st.encode(TEXTS), student[0].encode(TEXTS), atol=1e-6)  # texts without unknown words


# -- the prefix space of a byte-level BPE teacher -----------------------------------------------------
# A tiny GPT-2-style tokenizer: byte-level pre-tokenizer (after SmolLM2's digit split), BPE merges that make
# "cat"/"sat" and their word-start forms "Ġcat"/"Ġsat" ("Ġ" is the byte-level space); ids by hand below.
BPE_VOCAB = {
    tok: i for i, tok in enumerate(["<pad>", "</s>", "a", "c", "s", "t", "Ġ", "ca", "cat", "sa", "sat", "Ġcat", "Ġsat"])
}
BPE_MERGES = [("c", "a"), ("ca", "t"), ("s", "a"), ("sa", "t"), ("Ġ", "cat"), ("Ġ", "sat")]


@pytest.fixture(scope="module")
def byte_level_dir(tmp_path_factory):
    import transformers
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import BPE

    bpe = Tokenizer(BPE(vocab=BPE_VOCAB, merges=BPE_MERGES))
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    path = tmp_path_factory.mktemp("bpe") / "llama"
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(BPE_VOCAB),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        pad_token_id=0,
        eos_token_id=1,
    )
    transformers.AutoModel.from_config(config).save_pretrained(path)
    transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>").save_pretrained(
        path
    )
    return path


@pytest.fixture(scope="module")
def byte_level_teacher(byte_level_dir):
    return embedlab.load(str(byte_level_dir), pooling="mean")


def test_prefix_space_cuts_the_first_word_as_a_word_start(byte_level_teacher, tmp_path):
    """By hand: "cat sat" is [cat, Ġsat] under the teacher's own setting (no prefix space) and [Ġcat, Ġsat]
    with ``prefix_space=True``; the token vectors, and so the table, are the same either way."""
    from model2vec import StaticModel
    from sentence_transformers import SentenceTransformer

    teacher = byte_level_teacher
    v = BPE_VOCAB
    assert teacher.tokenizer("cat sat", add_special_tokens=False)["input_ids"] == [v["cat"], v["Ġsat"]]
    vectors = token_vectors(teacher)
    kept, kept_prov = distill(teacher, dims=None, weighting="none", vectors=vectors)
    spaced, spaced_prov = distill(teacher, dims=None, weighting="none", vectors=vectors, prefix_space=True)
    assert kept.source.tokenize(["cat sat"]).ids == [[v["cat"], v["Ġsat"]]]
    assert spaced.source.tokenize(["cat sat", " cat"]).ids == [[v["Ġcat"], v["Ġsat"]], [v["Ġcat"]]]
    np.testing.assert_array_equal(kept.source.table, spaced.source.table)
    mean = vectors[[v["Ġcat"], v["Ġsat"]]].mean(axis=0)
    np.testing.assert_allclose(spaced.encode(["cat sat"])[0], mean / np.linalg.norm(mean), atol=1e-6)
    assert (kept_prov["prefix_space"], kept_prov["teacher_prefix_space"]) == (False, False)
    assert (spaced_prov["prefix_space"], spaced_prov["teacher_prefix_space"]) == (True, False)
    # the teacher's own tokenizer is untouched, and False on it changes nothing
    assert teacher.tokenizer("cat", add_special_tokens=False)["input_ids"] == [v["cat"]]
    off, _ = distill(teacher, dims=None, weighting="none", vectors=vectors, prefix_space=False)
    assert off.source.tokenize(["cat sat"]).ids == [[v["cat"], v["Ġsat"]]]
    # saved: the tokenizer.json's byte-level pre-tokenizer (inside its Sequence) says so, and every loader follows it
    spaced.save(tmp_path / "spaced", provenance=spaced_prov)
    pre = json.loads((tmp_path / "spaced" / "tokenizer.json").read_text())["pre_tokenizer"]
    assert pre["type"] == "Sequence" and pre["pretokenizers"][1] == {
        "type": "ByteLevel",
        "add_prefix_space": True,
        "trim_offsets": True,
        "use_regex": True,
    }
    assert json.loads((tmp_path / "spaced" / "embedlab_static.json").read_text())["prefix_space"] is True
    assert load_static(tmp_path / "spaced").source.tokenize(["cat sat"]).ids == [[v["Ġcat"], v["Ġsat"]]]
    m2v = StaticModel.from_pretrained(str(tmp_path / "spaced"))
    assert m2v.tokenizer.encode("cat sat", add_special_tokens=False).ids == [v["Ġcat"], v["Ġsat"]]
    st = SentenceTransformer(str(tmp_path / "spaced"), device="cpu")
    assert st[0].tokenizer.encode("cat sat", add_special_tokens=False).ids == [v["Ġcat"], v["Ġsat"]]
    ours = load_static(tmp_path / "spaced").encode(["cat sat", "sat cat"])
    np.testing.assert_allclose(m2v.encode(["cat sat", "sat cat"]), ours, atol=1e-6)
    np.testing.assert_allclose(st.encode(["cat sat", "sat cat"]), ours, atol=1e-6)


def test_prefix_space_bad_settings(teacher, byte_level_teacher):
    with pytest.raises(ConfigError, match=r"^prefix_space must be true, false or None .*; got 'yes'$"):
        distill(byte_level_teacher, dims=None, prefix_space="yes")
    with pytest.raises(ConfigError, match="prefix_space applies to a byte-level BPE tokenizer") as exc:
        distill(teacher, dims=8, prefix_space=True)  # WordLevel + Whitespace: no byte-level pre-tokenizer
    assert "Whitespace" in _one_line(exc)
    _, provenance = distill(teacher, dims=8, vectors=token_vectors(teacher))
    assert provenance["prefix_space"] is None and provenance["teacher_prefix_space"] is None


def test_cli_distill_prefix_space(byte_level_dir, tiny_bert, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "distill",
        byte_level_dir,
        "--out",
        tmp_path / "s",
        "--no-pca",
        "--pooling",
        "mean",
        "--prefix-space",
    )
    assert code == 0, err
    assert load_static(tmp_path / "s").source.tokenize(["cat sat"]).ids == [[BPE_VOCAB["Ġcat"], BPE_VOCAB["Ġsat"]]]
    assert json.loads((tmp_path / "s" / "embedlab_static.json").read_text())["prefix_space"] is True
    code, _, err = run_cli(monkeypatch, capsys, "distill", tiny_bert, "--out", tmp_path / "o", "--prefix-space")
    assert code == 2 and "byte-level" in err and "Traceback" not in err and err.startswith("error:")
    assert not (tmp_path / "o").exists()


# -- bad input -------------------------------------------------------------------------------------
def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_dims_larger_than_the_teachers_width(teacher):
    with pytest.raises(ConfigError) as exc:
        distill(teacher, dims=33)
    assert _one_line(exc) == "dims 33 is larger than the teacher's width (32)"
    with pytest.raises(ConfigError) as exc:
        distill(teacher, dims=0)
    assert _one_line(exc) == "dims must be a positive integer; got 0"


def test_dims_larger_than_a_truncated_teachers_width(tiny_bert):
    teacher = embedlab.load(str(tiny_bert), truncate_dim=16)  # a Matryoshka teacher's output is 16 wide
    with pytest.raises(ConfigError) as exc:
        distill(teacher, dims=24)
    assert _one_line(exc) == "dims 24 is larger than the teacher's width (16)"


def test_a_vocabulary_whose_ids_are_not_one_row_each():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    from embedlab.models.static import build_static

    gaps = Tokenizer(WordLevel({"[UNK]": 0, "a": 1, "b": 5}, unk_token="[UNK]"))
    with pytest.raises(ConfigError) as exc:
        build_static(np.ones((3, 4), dtype=np.float32), gaps, source="gappy")
    assert "not 0..2" in _one_line(exc)


def test_a_tokenizer_without_vocabulary_access(teacher):
    class Slow:
        is_fast = False

    source = teacher.source.with_options()  # a new source sharing the model
    source.tokenizer = Slow()  # what a Python-only tokenizer offers: no tokenizers backend
    with pytest.raises(ConfigError) as exc:
        distill(teacher.with_source(source), dims=8)
    assert "fast tokenizer" in _one_line(exc)


def test_an_empty_corpus(teacher, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError) as exc:
        distill(teacher, dims=8, corpus=empty)
    assert "empty" in _one_line(exc)
    with pytest.raises(InputError):
        distill(teacher, dims=8, corpus=[])
    with pytest.raises(InputError) as exc:  # texts, but not one token
        distill(teacher, dims=8, corpus=["  ", "\t"])
    assert "no tokens" in _one_line(exc)


def test_other_bad_settings(teacher, student, saved):
    with pytest.raises(ConfigError, match="unknown prompt"):
        distill(teacher, dims=8, prompt_name="nope")
    with pytest.raises(ConfigError, match="already a static model"):
        distill(student[0], dims=4)
    with pytest.raises(ConfigError, match=r"^sif_coefficient must be in \(0, 1\); got 2\.0$"):
        distill(teacher, dims=8, sif_coefficient=2.0)
    with pytest.raises(ConfigError, match=r"^weighting must be one of zipf, sif, none; got 'idf'$"):
        distill(teacher, dims=8, weighting="idf")
    with pytest.raises(ConfigError, match="pooling"):
        embedlab.load(str(saved), pooling="cls")
    with pytest.raises(ConfigError, match="attention"):
        embedlab.load(str(saved), attention="causal")
    (saved.parent / "broken").mkdir()
    (saved.parent / "broken" / "config.json").write_text('{"model_type": "model2vec"}')
    with pytest.raises(ConfigError, match="missing"):
        embedlab.load(str(saved.parent / "broken"))


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_distill_then_encode_index_and_search(tiny_bert, tmp_path, monkeypatch, capsys):
    out = tmp_path / "static"
    code, _, err = run_cli(monkeypatch, capsys, "distill", tiny_bert, "--out", out, "--dims", "8")
    assert code == 0, err
    assert "distilled 83 tokens" in err and is_static_dir(out)
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\nzzz\n")
    code, _, err = run_cli(
        monkeypatch, capsys, "encode", "-m", out, "-i", tmp_path / "in.txt", "-o", tmp_path / "v.npy"
    )
    assert code == 0, err
    v = np.load(tmp_path / "v.npy")
    assert v.shape == (6, 8) and np.all(v[-1] == 0)
    np.testing.assert_allclose(v[:-1], embedlab.load(str(out)).encode(TEXTS), atol=1e-6)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(TEXTS)) + "\n")
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "index",
        "build",
        "--corpus",
        corpus,
        "--out",
        tmp_path / "idx",
        "-m",
        out,
        "--codec",
        "float32",
    )
    assert code == 0, err
    code, stdout, err = run_cli(monkeypatch, capsys, "search", tmp_path / "idx", "a dog ran fast", "--json", "-k", "2")
    assert code == 0, err
    assert "d1" in stdout
    code, stdout, err = run_cli(monkeypatch, capsys, "info", out)
    assert code == 0 and "static" in stdout


@pytest.mark.parametrize(
    "args,message,exit_code",
    [
        (["--dims", "64"], "--dims 64 is larger than the teacher's width (32)", 2),  # usage errors exit 2
        (["--corpus", "{empty}"], "empty", 1),  # bad input data exits 1
        (["--prompt", "nope"], "unknown prompt", 2),
        (["--dims", "8", "--no-pca"], "not both", 2),
    ],
)
def test_cli_distill_bad_input_is_one_line(tiny_bert, tmp_path, monkeypatch, capsys, args, message, exit_code):
    (tmp_path / "empty.txt").write_text("")
    args = [a.format(empty=tmp_path / "empty.txt") for a in args]
    code, _, err = run_cli(monkeypatch, capsys, "distill", tiny_bert, "--out", tmp_path / "o", *args)
    assert code == exit_code and message in err and "Traceback" not in err and err.startswith("error:")
    assert not (tmp_path / "o").exists()


def test_cli_distill_teacher_without_vocabulary_access_is_one_line(tiny_bert, tmp_path, monkeypatch, capsys):
    import embedlab.cli.train

    class Slow:  # a Python-only tokenizer: no tokenizers backend to read the vocabulary from
        is_fast = False

    def slow_teacher(model, pooling=None, attention=None):  # noqa: ANN001, ANN202
        teacher = embedlab.load(model)
        source = teacher.source.with_options()
        source.tokenizer = Slow()
        return teacher.with_source(source)

    monkeypatch.setattr(embedlab.cli.train, "load_embedder", slow_teacher)
    code, _, err = run_cli(monkeypatch, capsys, "distill", tiny_bert, "--out", tmp_path / "o", "--dims", "8")
    assert code == 2 and "fast tokenizer" in err and "Traceback" not in err and err.startswith("error:")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_cli_eval_runs_on_a_static_model(saved, tmp_path, monkeypatch, capsys):
    task = tmp_path / "tiny-sts"
    task.mkdir()
    (task / "test.tsv").write_text(
        "sentence1\tsentence2\tscore\n"
        + "\n".join(
            f"{a}\t{b}\t{s}"
            for a, b, s in [
                ("the cat sat", "the cat sat", 5),
                ("a dog ran", "the sky blue", 0),
                ("the big car", "the small car", 3),
                ("why is it", "how is it", 2),
            ]
        )
        + "\n"
    )
    (task / "task.json").write_text(json.dumps({"name": "TinySTS", "type": "sts", "files": {"test": "test.tsv"}}))
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", "-m", saved, "--task-dir", task, "--out", tmp_path / "res")
    assert code == 0, err
    assert json.loads((tmp_path / "res" / "TinySTS.json").read_text())["main_score"] is not None


# -- serve -----------------------------------------------------------------------------------------
def test_the_server_embeds_with_a_static_model(saved):
    import httpx

    from tests.serve.conftest import running

    model = embedlab.load(str(saved))
    texts = [*TEXTS, "zzz"]
    with running(model) as srv:
        res = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": texts}, timeout=30)
        assert res.status_code == 200, res.text
        got = np.array([d["embedding"] for d in sorted(res.json()["data"], key=lambda d: d["index"])])
    np.testing.assert_allclose(got, model.encode(texts), atol=1e-5)


# -- the packaged MiniLM (slow) --------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_distilled_keeps_sts_quality_and_pca_and_zipf_help(tmp_path):
    from embedlab.eval.registry import builtin_tasks
    from embedlab.eval.runner import run_task

    teacher = embedlab.load("minilm-l6")
    vectors = token_vectors(teacher)
    task = builtin_tasks()["STSBenchmark"]
    full, _ = distill(teacher, dims=256, vectors=vectors)
    bare, _ = distill(teacher, dims=None, weighting="none", vectors=vectors)
    s_full = run_task(task, full, tmp_path / "full")["main_score"]
    s_bare = run_task(task, bare, tmp_path / "bare")["main_score"]
    assert s_full >= 0.60  # model2vec's own distillation: 66.1 here (docs/static.md)
    assert s_full > s_bare


def test_a_sparse_teacher_is_refused_in_one_line(tiny_bert):
    from embedlab.models.static import distill

    splade = Embedder.from_pretrained(tiny_bert, pooling="splade")
    with pytest.raises(ConfigError, match=r"teacher gives sparse vectors \(pooling 'splade'\).*needs a dense teacher$"):
        distill(splade, dims=None)
