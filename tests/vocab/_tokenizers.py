"""Hand-built tokenizers for the vocabulary tests: piece counts known by hand."""

from __future__ import annotations

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def make_wordpiece():
    """A WordPiece with single letters (word-start and ##) and three whole words: every other word is
    cut into one piece per letter, so piece counts are known by hand."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + list(LETTERS)
        + ["##" + c for c in LETTERS]
        + ["cat", "the", "sat", ",", "."]
    )
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


BPE_CORPUS = [
    "the cell has mitochondria and ribosomes",
    "mitochondria make energy in the cell",
    "ribosomes make protein",
    "the protein folds",
    "a cell divides",
] * 3


def make_bpe(vocab_size: int = 280):
    """A byte-level BPE (GPT-2 style, no prefix space) trained on a few sentences: 256 bytes + merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(BPE_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=64
    )
