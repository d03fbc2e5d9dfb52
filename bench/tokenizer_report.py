"""The tokenizer quality report on UD Turkish-IMST, next to Bayram et al.'s figures -> docs/tokenizers.md (+ PNG, JSON).

Runs ``embedlab tokenizer report``'s library on the UD Turkish-IMST test + dev sentences (2,200 sentences,
../shared/data/turkish) for every tokenizer of the paper's ``paper_tokenizer_score_maps.csv`` that loads
offline, plus embedlab's own (minilm-l6, smollm2-135m, Mistral-7B's). The paper measured TR-MMLU, a
different text, so the comparison is of RANKINGS (Spearman and Kendall over the matched tokenizers),
never of digits.

    HF_HUB_OFFLINE=1 python bench/tokenizer_report.py [--out docs/tokenizers.md] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import copy_file, write_markdown  # noqa: E402
from embedlab.errors import EmbedlabError  # noqa: E402
from embedlab.settings import data_dir  # noqa: E402
from embedlab.tokenize import metrics as tm  # noqa: E402
from embedlab.tokenize.loading import load_tokenizer  # noqa: E402
from embedlab.tokenize.turkish import TurkishLexicon  # noqa: E402

# paper CSV row -> (our offline spec, how close the match is)
PAPER_MATCH = {
    "openai-community/gpt2": (
        "pypi:openai-whisper:gpt2",
        "exact: GPT-2's rank file as shipped in openai-whisper's assets (50,257 ids)",
    ),
    "mistralai/Mistral-Nemo-Instruct-2407": (
        "pypi:mistral-common:tekken_240718",
        "the tekken file dated with NeMo's release (2024-07-18); V = 131,072 as in the paper",
    ),
    "alibayram/tr_tokenizer": (
        "pypi:turkish-tokenizer",
        "approximate: the same author's root/suffix tokenizer, PyPI 0.2.26 (V = 32,768 here vs 30,158 in the paper)",
    ),
}
OURS = {
    "minilm-l6": "embedlab's default encoder (BERT WordPiece, uncased)",
    "smollm2-135m": "embedlab's decoder (byte-level BPE, from the GGUF)",
    "pypi:mistral-common": "Mistral-7B v0.1 SentencePiece (NV-Embed's base model)",
}


def read_ud(base: Path, limit: int | None) -> list[str]:
    texts = []
    for split in ("test", "dev"):
        texts += tm.read_corpus(base / "turkish" / f"ud_imst_{split}_sentences.tsv")
    return texts[:limit] if limit else texts


def ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: -values[i])
    r = [0] * len(values)
    for pos, i in enumerate(order, 1):
        r[i] = pos
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/tokenizers.md")
    ap.add_argument("--limit", type=int, default=None, help="first N sentences only (for a quick look)")
    args = ap.parse_args()
    from scipy.stats import kendalltau, spearmanr

    base = data_dir()
    if base is None:
        raise SystemExit("no ../shared/data: set EMBEDLAB_DATA")
    texts = read_ud(base, args.limit)
    lex = TurkishLexicon.load()
    with open(base / "turkish" / "paper_tokenizer_score_maps.csv", encoding="utf-8") as f:
        paper = list(csv.DictReader(f))

    results: dict[str, tm.TokenizerMetrics] = {}
    failed: dict[str, str] = {}
    for spec in [s for s, _ in PAPER_MATCH.values()] + list(OURS):
        try:
            results[spec] = tm.tokenizer_metrics(load_tokenizer(spec), texts, lexicon=lex)
            print(f"{spec}: fertility {results[spec].fertility:.3f}, %TR types {results[spec].turkish.tr_types:.3f}")
        except EmbedlabError as exc:
            failed[spec] = str(exc)
            print(f"{spec}: not measured: {exc}")
    ordered = list(results.values())

    out = Path(args.out)
    png = out.with_suffix(".png")
    title = f"UD Turkish-IMST test+dev: {len(texts):,} sentences, {ordered[0].n_words:,} words"
    with tempfile.TemporaryDirectory() as tmp:
        tm.plot(ordered, Path(tmp) / "p.png", title=title)
        copy_file(Path(tmp) / "p.png", png)
    tm.write_json(
        out.with_suffix(".json"),
        ordered,
        {
            "corpus": "UD Turkish-IMST test+dev sentences",
            "n_texts": len(texts),
            "alpha": tm.DEFAULT_ALPHA,
            "lexicon": lex.description,
            "not_measured": failed,
        },
    )
    print(f"wrote {out.with_suffix('.json')}")

    # --- paper vs ours ------------------------------------------------------------------------
    rows, matched = [], []
    for row in paper:
        name = row["tokenizer"]
        spec, how = PAPER_MATCH.get(name, (None, "no package ships it; the hub is unreachable here"))
        m = results.get(spec) if spec else None
        p_tr, p_pure = float(row["turkish-token-percent"]), float(row["pure-token-percent"])
        cells = [
            f"`{name}`",
            f"{int(row['vocab-size']):,}",
            f"{int(row['tokens-count']):,}",
            f"{100 * p_tr:.2f}",
            f"{100 * p_pure:.2f}",
        ]
        if m is not None:
            matched.append((name, int(row["tokens-count"]), p_tr, p_pure, m))
            cells += [
                f"`{spec}`",
                f"{m.n_tokens:,}",
                f"{100 * m.turkish.tr_types:.2f}",
                f"{100 * m.turkish.pure_types:.2f}",
                how,
            ]
        else:
            cells += ["–", "–", "–", "–", how if spec is None else f"`{spec}` failed: {failed.get(spec, '?')}"]
        rows.append("| " + " | ".join(cells) + " |")

    corr_lines = []
    if len(matched) >= 3:
        for label, pv, ov in (
            ("token count (fewer = better)", [-x[1] for x in matched], [-x[4].n_tokens for x in matched]),
            ("%TR (types)", [x[2] for x in matched], [x[4].turkish.tr_types for x in matched]),
            ("%Pure (types)", [x[3] for x in matched], [x[4].turkish.pure_types for x in matched]),
        ):
            rho, tau = spearmanr(pv, ov).statistic, kendalltau(pv, ov).statistic
            corr_lines.append(
                f"| {label} | {len(matched)} | {' > '.join(x[0].split('/')[-1] for _, x in sorted(zip(ranks(pv), matched)))} "
                f"| {' > '.join(x[0].split('/')[-1] for _, x in sorted(zip(ranks(ov), matched)))} | {rho:+.2f} | {tau:+.2f} |"
            )

    body = [
        "`embedlab tokenizer report TOKENIZER... --corpus FILE [--corpus2 FILE] [--lang tr] [--json OUT] [--png OUT]` "
        "measures tokenizers on a corpus. This page is its run on the UD Turkish-IMST test + dev sentences "
        "(`../shared/data/turkish`, CC BY-NC-SA 4.0) with `--lang tr`, next to the figures of Bayram et al. (2025), "
        "*Tokenization Standards for Linguistic Integrity: Turkish as a Benchmark* (arXiv 2502.07057).",
        "",
        f"## All tokenizers measured ({title})",
        "",
        *tm.to_markdown(ordered),
        "",
        f"![tokenizer metrics]({png.name})",
        "",
        "Where each comes from: " + "; ".join(f"`{m.tokenizer}`: {m.source}" for m in ordered) + ".",
        "",
        "## Next to the paper (rankings, not digits)",
        "",
        "The paper's numbers are on TR-MMLU (1.6 M characters of exam questions, not available offline); ours are on "
        "UD Turkish-IMST (newswire/literature sentences). Its %TR and %Pure are type-level (unique tokens) and its "
        "validity checks call the ITU web services; ours use offline lists (below). Only the *order* of the tokenizers "
        "can be compared. The paper's table (`paper_tokenizer_score_maps.csv`), every row:",
        "",
        "| paper tokenizer | paper V | paper tokens | paper %TR | paper %Pure | ours | our tokens | our %TR types | our %Pure types | match |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
        *rows,
        "",
    ]
    if corr_lines:
        body += [
            "Rank agreement between the paper and this run over the tokenizers both measured (ranked best first):",
            "",
            "| ranking by | n | paper order | our order | Spearman ρ | Kendall τ |",
            "|---|---:|---|---|---:|---:|",
            *corr_lines,
            "",
            f"With n = {len(matched)} a correlation is a statement about {len(matched)} points: ±1 means the same order, "
            "and no p-value can make it significant. Only three of the paper's fifteen tokenizers load offline here.",
            "",
            "Gaps behind our order (percentage points, types variant): "
            + "; ".join(
                f"{key}: "
                + ", ".join(
                    f"{x[0].split('/')[-1]} {100 * getattr(x[4].turkish, key):.2f}"
                    for x in sorted(matched, key=lambda x: -getattr(x[4].turkish, key))
                )
                for key in ("tr_types", "pure_types")
            )
            + ". A gap under one point between two tokenizers is within what a different text or lexicon moves; "
            "read such a swap as a tie.",
            "",
        ]
    body += DEFINITIONS
    write_markdown(out, "Tokenizer quality: fertility, compression, Rényi efficiency, %TR and %Pure", body)


DEFINITIONS = [
    "## The command",
    "",
    "```",
    "embedlab tokenizer report minilm-l6 smollm2-135m pypi:turkish-tokenizer \\",
    "    --corpus ../shared/data/turkish/ud_imst_test_sentences.tsv --lang tr --json tr.json --png tr.png",
    "embedlab tokenizer report smollm2-135m --corpus tr.txt --corpus2 en.txt   # parity on line-aligned text",
    "```",
    "",
    "Options: `--alpha` (Rényi order, 2.5), `--lexicon DIR` (the Turkish lists), `--limit N` (first N texts of each "
    "corpus). The corpus is one text per line, JSONL with `text`, or a `.tsv` with a header holding a `text` column "
    "(the shared UD files). A progress bar runs per tokenizer on stderr; bad input (unknown tokenizer, missing or "
    "empty file, corpora of different lengths for parity, `--lang` other than `tr`) is one line on stderr, exit 1. "
    "In Python: `embedlab.tokenize.tokenizer_metrics(spec_or_tokenizer, texts, texts2=..., lexicon=TurkishLexicon.load())` "
    "returns the same numbers, and accepts an in-memory transformers fast tokenizer (e.g. one just extended).",
    "",
    "TOKENIZER is a packaged alias (`minilm-l6`, `smollm2-135m`: the GGUF's tokenizer comes from its metadata, the "
    "weights are not loaded), an HF directory, a `tokenizer.json`, a SentencePiece `.model`, a tiktoken/tekken file, "
    "a `.gguf`, or a tokenizer that ships in a PyPI package:",
    "",
    "- `pypi:turkish-tokenizer` — Bayram et al.'s own root/suffix/BPE tokenizer. Version **0.2.26**: the current 1.0.4 "
    "is a Rust source distribution whose build fetches crates from the network, so it cannot install offline. "
    "The wheel holds `kokler.json` (roots), `ekler.json` (suffixes), `bpe_tokenler.json` and pure-Python code.",
    "- `pypi:mistral-common[:FILE]` — `mistral-common` 1.13.1's `data/` folder holds `tokenizer.model.v1` "
    "(Mistral-7B v0.1/NV-Embed's 32,000-piece SentencePiece, the default), `mistral_instruct_tokenizer_*.model.v2/v3/v7*`, "
    "and `tekken_240718.json` / `tekken_240911.json` (tiktoken-style byte-level BPE, 131,072 ids of which 1,000 are "
    "control tokens). The package is not imported, only its files are read: it pins numpy<2.4 on Python 3.11, which "
    "conflicts with embedlab's numpy 2.4.6, and an importable `mistral_common` makes transformers route Mistral "
    "tokenizers through it; so `make setup` installs it apart from site-packages: `pip install --no-deps --target "
    "<venv>/tokenizer-data mistral-common==1.13.1` (or any folder named by `$EMBEDLAB_TOKENIZER_DATA`). "
    "SentencePiece files run in the `sentencepiece` library; tekken files become a `tokenizers` byte-level BPE "
    "through transformers' tiktoken converter (merges rebuilt from the ranks).",
    "- `pypi:openai-whisper[:gpt2|multilingual]` — `assets/gpt2.tiktoken` is GPT-2's BPE; same `--no-deps` install "
    "(`openai-whisper==20250625`, whose dependencies include torch extras and numba that are not needed to read a file).",
    "",
    "## Definitions",
    "",
    "**Words** are the same for every tokenizer: the regex `\\w+|[^\\w\\s]` (runs of letters/digits/underscore in any "
    "script, and each punctuation or symbol character alone; whitespace separates). `Ankara'ya.` is 4 words: "
    "`Ankara ' ya .` — UD's own convention for punctuation.",
    "",
    "**Tokens**: each corpus line is encoded once as running text, without special tokens ([CLS], BOS). A token "
    "belongs to the word that holds the first non-space character of its span; a zero-width token (the Turkish "
    "tokenizer's `<uppercase>`) to the word at its position; a token made only of whitespace (a lone `▁`/`Ġ`, the "
    "Turkish tokenizer's space token) to no word, though it counts in T.",
    "",
    "With T tokens, W words, V the vocabulary size (added tokens included), c_i the count of token id i, p_i = c_i/T:",
    "",
    "| metric | formula | source |",
    "|---|---|---|",
    "| fertility | T / W | Rust et al. 2021 |",
    '| split words | #{words with ≥ 2 tokens} / W ("proportion of continued words") | Rust et al. 2021 |',
    "| bytes/tok, chars/tok | UTF-8 bytes / T, characters / T (whitespace included) | compression |",
    "| vocab used | #{i : c_i > 0} / V | |",
    "| UNK | c_unk / T (0 when the tokenizer has no UNK token: byte-level BPEs) | |",
    "| Rényi eff. | H_α(p) / log V, H_α(p) = log(Σ p_i^α) / (1 − α), α = 2.5 (`--alpha`; α = 1 is Shannon) | Zouhar et al. 2023 |",
    "| parity | T(corpus) / T(corpus2) on line-aligned text; also the mean of per-line ratios | Petrov et al. 2023 |",
    "| %TR tokens / types | valid pieces / all pieces, over all tokens / over unique pieces | Bayram et al. 2025 |",
    "| %Pure tokens / types | pure pieces / all pieces, over all tokens / over unique pieces | Bayram et al. 2025 |",
    "",
    "The JSON also has `renyi_efficiency_observed` (normalised by the number of distinct tokens seen, the default of the "
    "`tokenization-scorer` package, which the tests check our numbers against), the raw counts, and the seconds taken.",
    "",
    "### %TR and %Pure",
    "",
    "A token is first reduced to its *piece*: the id decoded on its own (as the paper's code does) with the word-start "
    "marker removed. Per tokenizer family: WordPiece — a leading `##` continuation marker is stripped; SentencePiece — "
    "`▁` becomes a space and is stripped; byte-level BPE (GPT-2, SmolLM2, tekken) — the byte-level decoder maps `Ġ` to a "
    "space (stripped) and a piece holding half a UTF-8 character decodes to U+FFFD (never valid); the Turkish rule-based "
    "tokenizer — its token strings, `<uppercase>` and the space token giving the empty piece. Empty pieces are left out "
    "of numerator and denominator. A piece is **Turkish-valid** if it is in the Turkish lexicon, **pure** if it is a "
    "root or a suffix of the morpheme inventory; lookups ignore case with Turkish rules (I→ı, İ→i).",
    "",
    "The paper's text divides by all tokens, its code and tables by unique tokens: both are reported, as `*_tokens` "
    "and `*_types`. The table above compares the paper with the types variant.",
    "",
    "**Deviation (lexicons).** The paper checks its local root+affix list first and otherwise asks the ITU Turkish NLP "
    "web services (IsTurkish for validity, MorphAnalyzer for purity). Offline, embedlab uses the lists in "
    "`../shared/data/turkish/morphemes/` (`--lexicon DIR` to change):",
    "",
    "- pure = the paper authors' list `tokenizer_benchmark_ekler_kokler.txt` ∪ `turkce_kokler_roots_filtered.txt` ∪ the "
    "roots and suffixes of the turkish-tokenizer (`turkish_tokenizer_roots.tsv`, `turkish_tokenizer_suffixes.tsv`, "
    "special tokens dropped) ∪ `turkce_kokler_ekler.json` (suffix categories plus conjunctions, postpositions, "
    "interjections — free single morphemes);",
    "- valid = pure ∪ the TDK dictionary headwords `tdk_kelimeler.txt` (the stand-in for IsTurkish).",
    "",
    "A headword list has no inflected forms, so a piece such as `evler` that IsTurkish accepts is not valid here "
    "unless a list has it: our %TR is a lower bound of the paper's, most so for tokenizers with long whole-word pieces. "
    "The lists also hold many one- and two-letter entries (single letters, abbreviations such as `cb`), which makes "
    "short pieces count as valid — the paper's local list has the same property.",
    "",
    "Numbers from the paper's notebook and its tables differ (gemma-2: 40.96 vs 48.63 %TR); the CSV here is the "
    "repository's `tokenizer_score_maps.csv`.",
]


if __name__ == "__main__":
    main()
