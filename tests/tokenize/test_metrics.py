"""Tokenizer metrics on tiny hand-built tokenizers, with every expected number computed by hand."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from embedlab.errors import ConfigError, EmptyInput, InputError, ModelNotFoundError
from embedlab.tokenize import load_tokenizer, renyi_efficiency, split_words, tokenizer_metrics
from embedlab.tokenize.loading import package_dir
from embedlab.tokenize.metrics import parity, renyi_entropy


def wordpiece() -> Tokenizer:
    vocab = {"[UNK]": 0, "kitap": 1, "##lar": 2, "ev": 3, "##ler": 4, ".": 5, "gel": 6, "##di": 7, "x": 8}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return tok


def wordlevel() -> Tokenizer:
    vocab = {"[UNK]": 0, "a": 1, "b": 2, "c": 3, ".": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def metaspace() -> Tokenizer:
    """A SentencePiece-style BPE: '▁' marks a word start, and a lone '▁' is a token of its own."""
    vocab = {
        "<unk>": 0,
        "▁": 1,
        "k": 2,
        "i": 3,
        "t": 4,
        "a": 5,
        "p": 6,
        "l": 7,
        "r": 8,
        "e": 9,
        "v": 10,
        "▁k": 11,
        "▁e": 12,
        "ki": 13,
        "ta": 14,
        "▁ki": 15,
        "▁kita": 16,
        "▁kitap": 17,
        "la": 18,
        "lar": 19,
        "▁ev": 20,
    }
    merges = [
        ("▁", "k"),
        ("▁", "e"),
        ("k", "i"),
        ("t", "a"),
        ("▁k", "i"),
        ("▁ki", "ta"),
        ("▁kita", "p"),
        ("l", "a"),
        ("la", "r"),
        ("▁e", "v"),
    ]
    tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    return tok


def test_split_words_is_whitespace_plus_punctuation():
    text = "Ankara'ya gittim, 2 kez!"
    assert [text[s:e] for s, e in split_words(text)] == ["Ankara", "'", "ya", "gittim", ",", "2", "kez", "!"]
    assert split_words("   ") == []


def test_wordpiece_metrics_by_hand():
    # "kitaplar ev evler." -> kitap ##lar | ev | ev ##ler | .   = 6 tokens, 4 words, 2 of them split
    # "gel x y"            -> gel | x | [UNK]                   = 3 tokens, 3 words
    texts = ["kitaplar ev evler.", "gel x y"]
    m = tokenizer_metrics(load_tokenizer(wordpiece(), name="wp"), texts)
    assert m.family == "wordpiece" and m.vocab_size == 9 and m.unk_id == 0
    assert (m.n_tokens, m.n_words) == (9, 7)
    assert m.fertility == pytest.approx(9 / 7)
    assert m.continued_words == pytest.approx(2 / 7)
    assert m.n_chars == 18 + 7 and m.n_bytes == 25
    assert m.chars_per_token == pytest.approx(25 / 9) and m.bytes_per_token == pytest.approx(25 / 9)
    assert m.unk_rate == pytest.approx(1 / 9)
    # ids used: kitap ##lar ev ##ler . gel x [UNK] = 8 of 9
    assert m.vocab_used == pytest.approx(8 / 9)
    counts = [1, 1, 2, 1, 1, 1, 1, 1]  # ev twice
    assert m.renyi_efficiency == pytest.approx(renyi_efficiency(counts, 9, 2.5))
    assert m.renyi_efficiency_observed == pytest.approx(renyi_efficiency(counts, None, 2.5))
    assert m.parity is None and m.turkish is None


def test_bytes_differ_from_chars_for_non_ascii():
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "ığ": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    m = tokenizer_metrics(tok, ["ığ ığ"])
    assert (m.n_chars, m.n_bytes, m.n_tokens) == (5, 9, 2)  # ı and ğ are 2 bytes each in UTF-8
    assert m.bytes_per_token == pytest.approx(4.5) and m.chars_per_token == pytest.approx(2.5)


def test_metaspace_lone_marker_is_counted_but_attributed_to_no_word():
    tok = load_tokenizer(metaspace(), name="sp")
    assert tok.family == "sentencepiece"
    enc = tok.encode_batch(["kitaplar ev"])[0]
    assert [tok.piece(i) for i in enc.ids] == ["kitap", "lar", "ev"]
    # "kitap  ev": the second space becomes a lone '▁' token that belongs to no word
    m = tokenizer_metrics(tok, ["kitaplar  ev"])
    assert m.n_tokens == 4 and m.n_words == 2 and m.n_unattributed == 1
    assert m.fertility == pytest.approx(2.0) and m.continued_words == pytest.approx(0.5)


def test_byte_level_pieces_drop_the_space_marker():
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        ["kitaplar evler kitap ev"] * 20,
        BpeTrainer(vocab_size=300, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    lt = load_tokenizer(tok)
    assert lt.family == "byte-level" and lt.unk_id is None
    enc = lt.encode_batch(["kitap ev"])[0]
    assert "".join(lt.piece(i) for i in enc.ids) == "kitapev"
    assert all(not lt.piece(i).startswith(("Ġ", " ")) for i in enc.ids)
    assert tokenizer_metrics(lt, ["kitap ev"]).unk_rate == 0.0


def test_renyi_by_hand():
    # counts 2,1,1 -> p = (.5,.25,.25); H_2 = -log(.375); H_1 = 1.5 log 2
    assert renyi_entropy([2, 1, 1], 2.0) == pytest.approx(-math.log(0.375))
    assert renyi_entropy([2, 1, 1], 1.0) == pytest.approx(1.5 * math.log(2))
    assert renyi_efficiency([2, 1, 1], 4, 2.0) == pytest.approx(-math.log(0.375) / math.log(4))
    assert renyi_efficiency([5, 5, 5, 5], 4, 2.5) == pytest.approx(1.0)  # uniform over the whole vocabulary
    with pytest.raises(EmptyInput):
        renyi_entropy([0, 0])
    with pytest.raises(ConfigError):
        renyi_efficiency([3], None)


@pytest.mark.parametrize("alpha", [2.5, 3.0, 1.5])
@pytest.mark.parametrize("vocab", [None, 50])
def test_renyi_matches_tokenization_scorer(alpha, vocab):
    scorer = pytest.importorskip("tokenization_scorer")
    tok = load_tokenizer(wordpiece())
    texts = ["kitaplar ev evler.", "gel x y", "evler evler kitap.", "gelди"]
    m = tokenizer_metrics(tok, texts, alpha=alpha)
    # the same token stream, written as whitespace-separated id strings for the package
    stream = "\n".join(" ".join(f"t{i}" for i in enc.ids) for enc in tok.encode_batch(texts))
    kwargs = {"power": alpha} if vocab is None else {"power": alpha, "vocab": vocab}
    theirs = scorer.score(stream, metric="renyi", **kwargs)
    counts = Counter(i for enc in tok.encode_batch(texts) for i in enc.ids)
    assert renyi_efficiency(counts.values(), vocab, alpha) == pytest.approx(theirs, rel=1e-9)
    if vocab is None:
        assert m.renyi_efficiency_observed == pytest.approx(theirs, rel=1e-9)


def test_parity_by_hand_and_through_metrics():
    assert parity([2, 4], [1, 4]) == (pytest.approx(6 / 5), pytest.approx((2 + 1) / 2))
    assert parity([3, 1], [0, 2])[1] == pytest.approx(0.5)  # a line with no tokens in B is skipped
    with pytest.raises(InputError):
        parity([1, 2], [1])
    m = tokenizer_metrics(wordlevel(), ["a b c", "a"], texts2=["a b", "a b"])
    assert m.parity == pytest.approx(4 / 4) and m.parity_mean_line == pytest.approx((1.5 + 0.5) / 2)
    assert m.n_tokens2 == 4
    with pytest.raises(InputError, match="line-aligned"):
        tokenizer_metrics(wordlevel(), ["a b c", "a"], texts2=["a"])


def test_in_memory_transformers_tokenizer_counts_added_tokens():
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=wordpiece(), unk_token="[UNK]")
    before = tokenizer_metrics(hf, ["kitaplar evler"])
    hf.add_tokens(["kitaplar"])
    after = tokenizer_metrics(load_tokenizer(hf, name="extended"), ["kitaplar evler"])
    assert (before.n_tokens, after.n_tokens) == (4, 3)
    assert after.vocab_size == 10 and after.tokenizer == "extended"


def test_bad_input_gives_one_line_errors(tmp_path):
    with pytest.raises(EmptyInput):
        tokenizer_metrics(wordlevel(), [])
    with pytest.raises(EmptyInput):
        tokenizer_metrics(wordlevel(), ["   ", ""])
    with pytest.raises(InputError):
        tokenizer_metrics(wordlevel(), "a b c")
    with pytest.raises(ModelNotFoundError, match="unknown tokenizer 'no-such-tokenizer'"):
        load_tokenizer("no-such-tokenizer")
    with pytest.raises(ModelNotFoundError):
        load_tokenizer(str(tmp_path / "missing" / "tokenizer.json"))
    with pytest.raises(ModelNotFoundError, match="pypi:turkish-tokenizer"):
        load_tokenizer("pypi:no-such-package")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not a tokenizer.json"):
        load_tokenizer(str(bad))
    with pytest.raises(ConfigError, match="not a tokenizer.json"):
        load_tokenizer(str(tmp_path))  # a directory whose tokenizer.json is broken
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no tokenizer found"):
        load_tokenizer(str(tmp_path / "empty"))
    with pytest.raises(ConfigError):
        load_tokenizer(42)


def test_tokenizer_json_file_and_directory_load_the_same(tmp_path):
    wordpiece().save(str(tmp_path / "tokenizer.json"))
    a = tokenizer_metrics(str(tmp_path / "tokenizer.json"), ["kitaplar ev evler."])
    b = tokenizer_metrics(str(tmp_path), ["kitaplar ev evler."])
    assert a.n_tokens == b.n_tokens == 6 and a.family == b.family == "wordpiece"


def test_progress_bar_sees_every_text():
    from embedlab.progress import NullBar

    bars: list[NullBar] = []

    def factory(**kw):
        bars.append(NullBar(kw["total"]))
        return bars[-1]

    tokenizer_metrics(wordlevel(), ["a"] * 1100, show_progress=factory)
    assert [(b.n, b.total) for b in bars] == [(1100, 1100)]


def test_turkish_rules_tokenizer_from_its_wheel():
    pytest.importorskip("turkish_tokenizer")
    tok = load_tokenizer("pypi:turkish-tokenizer")
    assert tok.family == "turkish-rules" and tok.unk_id is not None
    enc = tok.encode_batch(["Kitaplarımızdan geldi"])[0]
    assert enc.pieces == ["", "kitap", "lar", "ım", "ız", "dan", "", "gel", "di"]
    m = tokenizer_metrics(tok, ["Kitaplarımızdan geldi"])
    # <uppercase> is zero-width and belongs to "Kitaplarımızdan"; the space token belongs to no word
    assert m.n_tokens == 9 and m.n_unattributed == 1 and m.continued_words == pytest.approx(1.0)


def test_mistral_sentencepiece_from_its_wheel():
    import importlib.util

    if package_dir("mistral_common") is None or importlib.util.find_spec("sentencepiece") is None:
        pytest.skip("mistral-common (--no-deps) and sentencepiece are not installed")
    tok = load_tokenizer("pypi:mistral-common")
    assert tok.family == "sentencepiece" and tok.vocab_size == 32000
    enc = tok.encode_batch(["Çok güzel ev"])[0]
    assert "".join(tok.piece(i) for i in enc.ids) == "Çokgüzelev"
    assert enc.offsets[-1][1] == len("Çok güzel ev")  # byte offsets mapped back to characters
    with pytest.raises(ModelNotFoundError, match="it ships"):
        load_tokenizer("pypi:mistral-common:nope.model")


@pytest.mark.slow
def test_packaged_aliases_and_tekken():

    texts = ["Kitaplarımızdan geldi, evet.", "Çok güzel bir gün."]
    mini = tokenizer_metrics("minilm-l6", texts)
    assert mini.family == "wordpiece" and mini.vocab_size == 30522 and mini.unk_id == 100
    smol = tokenizer_metrics("smollm2-135m", texts)
    assert smol.family == "byte-level" and smol.vocab_size == 49152 and smol.unk_rate == 0.0
    if package_dir("mistral_common") is not None:
        nemo = tokenizer_metrics("pypi:mistral-common:tekken_240718", texts)
        assert nemo.family == "byte-level" and nemo.vocab_size == 131072
        assert nemo.fertility < smol.fertility  # a multilingual 131k vocabulary cuts Turkish less


def test_gpt2_rank_file_from_whisper_gives_gpt2_ids():

    if package_dir("whisper") is None:
        pytest.skip("openai-whisper (--no-deps) is not installed")
    tok = load_tokenizer("pypi:openai-whisper:gpt2")
    assert tok.family == "byte-level" and tok.vocab_size == 50257 and tok.unk_id is None
    # GPT-2's published ids: "Hello" 15496, "Ġworld" 995, "," 11
    assert tok.encode_batch(["Hello world,"])[0].ids == [15496, 995, 11]
    assert [tok.piece(i) for i in (15496, 995)] == ["Hello", "world"]
