"""Vocabulary adaptation experiment -> docs/vocabulary.md (+ docs/vocabulary.png).

SciFact as the biomedical domain: ~2,000 new ids chosen from the SciFact corpus (the documents used for
evaluation held out), every init method of ``embedlab vocab extend``, and for each: fertility before and
after, SciFact nDCG@10 untrained, and nDCG@10 after the same short contrastive adaptation on
``scifact-train`` (embedlab's Trainer). Turkish: smollm2-135m's tokenizer extended from the UD dev text and
the morpheme lists, fertility / %TR / %Pure on the UD test text.

Stages resume from ``runs/vocab_adaptation/`` (one JSON per finished item), so a killed run loses only
the item in progress; ``--max-minutes`` stops cleanly before the lock's 10-minute slot ends. Rerun the
same command until it prints "all done"; the report is rewritten from whatever is finished. Finished
records are also kept in ``docs/vocabulary.json`` (with the chosen candidates), and a run seeds
``runs/`` from it, so one init can be rerun on a fresh checkout without the others:

    flock /tmp/embedlab-cpu.lock timeout 600 python bench/vocab_adaptation.py --max-minutes 9
    python bench/vocab_adaptation.py --only minilm-l6 --inits cw2v --redo   # only the CW2V rows, anew
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO, copy_file, write_markdown  # noqa: E402
from embedlab.io import atomic_path, write_json  # noqa: E402
from embedlab.readers import read_jsonl  # noqa: E402

RUNS = REPO / "runs" / "vocab_adaptation"
RECORDS = REPO / "docs" / "vocabulary.json"  # the finished records, committed with the report
DATA = REPO.parent / "shared" / "data"
INITS = ("random", "mean", "multivariate", "fvt", "wechsel", "cw2v")
MODELS = {
    "minilm-l6": {"pooling": None, "max_length": 128, "add": 2000, "inits": INITS, "train": INITS, "distractors": 200},
    "smollm2-135m": {
        "pooling": "mean",
        "max_length": 64,
        "add": 2000,
        "inits": INITS,
        "train": ("random", "fvt"),
        "distractors": 0,
    },
}
TRAIN = {"steps": 20, "batch_size": 16, "lr": 5e-5, "warmup_steps": 3, "temperature": 0.05}
INIT_OPTIONS = {
    "cw2v": {"steps": 300, "rank": 64, "support": 4096, "batch": 1024, "lr": 0.01},
    "wechsel": {"dim": 100, "epochs": 3, "min_count": 3, "workers": 2},
}
SEED = 0
# CW2V as measured before the issue-22.13 fixes (docs/vocabulary.md at commit 2fb8ab3, run on 40b69ea): pairs crossed
# documents, the support lacked the pieces merged into new tokens, and every row started at the centroid
CW2V_BEFORE = {"minilm-l6": {"untrained": 0.6532, "adapted": 0.7247}, "smollm2-135m": {"untrained": 0.1505}}


class OutOfTime(Exception):
    pass


class Budget:
    def __init__(self, minutes: float) -> None:
        self.end = time.monotonic() + minutes * 60

    def check(self, need_s: float, what: str) -> None:
        if time.monotonic() + need_s > self.end:
            raise OutOfTime(f"stopping before {what} (budget): rerun to resume")


def cached(path: Path, fn: Callable[[], Any]) -> Any:
    if path.is_file():
        return json.loads(path.read_text())
    value = fn()
    write_json(path, value)
    return value


# -- data ---------------------------------------------------------------------------------------
def scifact_subset(distractors: int) -> tuple[Path, list[str], list[str]]:
    """A BEIR subset (every test query, its relevant docs, ``distractors`` seeded random others) under
    runs/, the selection corpus (every other SciFact doc) and the measurement texts (subset docs + queries)."""
    root = RUNS / f"scifact-sub{distractors}"
    corpus = {
        str(d["_id"]): (d.get("title", "") + " " + d.get("text", "")).strip()
        for d in read_jsonl(DATA / "scifact" / "corpus.jsonl.gz")
    }
    queries = {str(q["_id"]): q["text"] for q in read_jsonl(DATA / "scifact" / "queries.jsonl")}
    qrels = [
        line.split("\t") for line in (DATA / "scifact" / "qrels" / "test.tsv").read_text().splitlines()[1:] if line
    ]
    relevant = sorted({d for _, d, _ in qrels if d in corpus})
    others = sorted(set(corpus) - set(relevant))
    keep = relevant + random.Random(SEED).sample(others, distractors)
    if not (root / "qrels" / "test.tsv").is_file():
        (root / "qrels").mkdir(parents=True, exist_ok=True)
        with atomic_path(root / "corpus.jsonl") as tmp:
            tmp.write_text("".join(json.dumps({"_id": d, "title": "", "text": corpus[d]}) + "\n" for d in keep))
        qids = sorted({q for q, _, _ in qrels})
        with atomic_path(root / "queries.jsonl") as tmp:
            tmp.write_text("".join(json.dumps({"_id": q, "text": queries[q]}) + "\n" for q in qids if q in queries))
        with atomic_path(root / "qrels" / "test.tsv") as tmp:
            tmp.write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in qrels))
    held = set(keep)
    selection = [corpus[d] for d in corpus if d not in held]
    measure = [corpus[d] for d in keep] + sorted({queries[q] for q, _, _ in qrels if q in queries})
    return root, selection, measure


def task_for(root: Path) -> Any:
    from embedlab.eval.registry import TaskSpec

    return TaskSpec(
        name=f"SciFact-{root.name}",
        type="retrieval",
        root=root,
        files={"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "qrels/test.tsv"},
    )


def fertility(tokenizer: Any, texts: list[str], name: str) -> float:
    from embedlab.tokenize import load_tokenizer, tokenizer_metrics

    return tokenizer_metrics(load_tokenizer(tokenizer, name=name), texts).fertility  # part 1's metric, one line


# -- stages --------------------------------------------------------------------------------------
def evaluate(emb: Any, task: Any, out: Path) -> dict[str, Any]:
    from embedlab.eval.runner import run_task

    res = run_task(task, emb, out.parent / (out.stem + "_eval"), dtype="fp32")
    return {
        "ndcg_at_10": res["main_score"],
        "per_example": res["per_example"],
        "seconds": res["metadata"]["evaluation_time_s"],
    }


def seed_runs(redo: dict[str, tuple[str, ...]]) -> None:
    """Write the records of docs/vocabulary.json that runs/ lacks (not those of the inits being redone)."""
    if not RECORDS.is_file():
        return
    saved = json.loads(RECORDS.read_text())
    for name, m in saved.get("models", {}).items():
        d = RUNS / name
        pairs = [(k, m.get(k)) for k in ("base", "candidates", "cw2v_centroid")] + list(m.get("inits", {}).items())
        for key, rec in pairs:
            gone = key in redo.get(name, ()) or (key == "cw2v_centroid" and "cw2v" in redo.get(name, ()))
            if rec is None or gone or (d / f"{key}.json").is_file():
                continue
            write_json(d / f"{key}.json", rec)
    if saved.get("turkish") and not (RUNS / "turkish.json").is_file():
        write_json(RUNS / "turkish.json", saved["turkish"])


def carry(commit: str) -> None:
    """Rows no run has recorded yet, read back from the docs/vocabulary.md table at ``commit`` (nDCG@10,
    fertility; no per-query scores, so no CI) and marked as carried in the report. A bridge for the
    records made before docs/vocabulary.json existed; a later full run replaces them."""
    import re
    import subprocess

    text = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{commit}:docs/vocabulary.md"], capture_output=True, text=True, check=True
    ).stdout
    for name, spec in MODELS.items():
        part = text.split(f"### {name}", 1)
        if len(part) < 2:
            continue
        table = part[1].split("What it says", 1)[0]
        for m in spec["inits"]:
            f = RUNS / name / f"{m}.json"
            row = re.search(
                rf"^\| `{m}` \| ([0-9.]+) \| [^|]+ \| ([0-9.]+) \| [^|]+ \|(?: ([0-9.]+|not run) \|)?", table, re.M
            )
            if f.is_file() or row is None:
                continue
            rec: dict[str, Any] = {
                "carried_from": commit,
                "fertility": float(row.group(1)),
                "untrained": {"ndcg_at_10": float(row.group(2)) / 100, "per_example": None},
            }
            if row.group(3) and row.group(3) != "not run":
                rec["adapted"] = {"ndcg_at_10": float(row.group(3)) / 100, "per_example": None}
            write_json(f, rec)


def forget(name: str, methods: tuple[str, ...]) -> None:
    """Remove the finished records, models and evaluation folders of ``methods`` (``--redo``)."""
    import shutil

    d = RUNS / name
    for m in methods:
        for f in (d / f"{m}.json",) + ((d / "cw2v_centroid.json",) if m == "cw2v" else ()):
            f.unlink(missing_ok=True)
        for sub in (
            d / "models" / m,
            d / "trained" / m,
            d / f"{m}_eval",
            d / f"{m}_adapted_eval",
            d / "cw2v_centroid_eval",
        ):
            shutil.rmtree(sub, ignore_errors=True)


def run_model(
    name: str, spec: dict[str, Any], budget: Budget, log: Callable[[str], None], inits: tuple[str, ...] | None = None
) -> None:
    from embedlab.models import Embedder
    from embedlab.vocab.extend import extend_embedder, save_extended
    from embedlab.vocab.selection import select_tokens_saved

    root, selection, measure = scifact_subset(spec["distractors"])
    task = task_for(root)
    d = RUNS / name
    base_file = d / "base.json"
    base = None
    if not base_file.is_file():
        budget.check(60, f"{name} base eval")
        base = Embedder.from_pretrained(name, pooling=spec["pooling"], max_length=spec["max_length"])
        t0 = time.perf_counter()
        r = evaluate(base, task, base_file)
        r["fertility"] = fertility(base.tokenizer, measure, name)
        write_json(base_file, r)
        log(f"{name} base nDCG@10 {r['ndcg_at_10']:.4f} ({time.perf_counter() - t0:.0f} s)")
    for method in spec["inits"]:
        if inits is not None and method not in inits:
            continue
        f = d / f"{method}.json"
        train = method in spec["train"]  # the inits that get the short adaptation (all for minilm-l6)
        if f.is_file() and (not train or json.loads(f.read_text()).get("adapted")):
            continue
        rec = json.loads(f.read_text()) if f.is_file() else None
        model_dir = d / "models" / method
        if rec is None:
            budget.check(150, f"{name} {method} extend + eval")
            base = base or Embedder.from_pretrained(name, pooling=spec["pooling"], max_length=spec["max_length"])
            cands_file = d / "candidates.json"
            if cands_file.is_file():
                from embedlab.vocab.selection import Candidate

                cands = [Candidate(**c) for c in json.loads(cands_file.read_text())]
            else:
                t0 = time.perf_counter()
                cands = select_tokens_saved(base.tokenizer, selection, spec["add"] * 2, min_count=3)
                write_json(cands_file, [c.__dict__ for c in cands])
                log(f"{name}: {len(cands)} candidates from {len(selection)} docs ({time.perf_counter() - t0:.0f} s)")
            t0 = time.perf_counter()
            emb, report = extend_embedder(
                base,
                corpus=selection,
                method=method,
                add=spec["add"],
                candidates=cands,
                seed=SEED,
                options=INIT_OPTIONS.get(method),
            )
            t_init = time.perf_counter() - t0
            if train:
                save_extended(emb, report, model_dir)
            r = evaluate(emb, task, f)
            rec = {
                "init_seconds": round(t_init, 1),
                "untrained": r,
                "fertility": fertility(emb.tokenizer, measure, f"{name}+{method}"),
                "extension": {
                    k: v for k, v in report.items() if k not in ("tokens", "skipped_forms", "unreachable_forms")
                },
            }
            write_json(f, rec)
            log(
                f"{name} {method}: nDCG@10 {r['ndcg_at_10']:.4f}, fertility {rec['fertility']:.3f}, init {t_init:.0f} s"
            )
        if train and not rec.get("adapted"):
            budget.check(150, f"{name} {method} adaptation")
            from embedlab.train import TrainConfig, run

            t0 = time.perf_counter()
            out = d / "trained" / method
            cfg = TrainConfig(
                model=str(model_dir),
                data={"source": "scifact-train", "instruction": ""},
                output=str(out),
                max_length=spec["max_length"],
                seed=SEED,
                log_every=10,
                **TRAIN,
            )
            trained = run(cfg, resume=True)
            t_train = time.perf_counter() - t0
            r = evaluate(trained, task, d / f"{method}_adapted.json")
            rec["adapted"] = {**r, "train_seconds": round(t_train, 1)}
            write_json(f, rec)
            log(f"{name} {method}: adapted nDCG@10 {r['ndcg_at_10']:.4f} (train {t_train:.0f} s)")
    # ablation: CW2V with every row starting at the support's centroid (the start before issue 22.13)
    f = d / "cw2v_centroid.json"
    if (
        "cw2v" in spec["inits"]
        and (inits is None or "cw2v" in inits)
        and not f.is_file()
        and (d / "candidates.json").is_file()
    ):
        from embedlab.vocab.selection import Candidate

        budget.check(150, f"{name} cw2v centroid-start ablation")
        base = base or Embedder.from_pretrained(name, pooling=spec["pooling"], max_length=spec["max_length"])
        cands = [Candidate(**c) for c in json.loads((d / "candidates.json").read_text())]
        emb, report = extend_embedder(
            base,
            corpus=selection,
            method="cw2v",
            add=spec["add"],
            candidates=cands,
            seed=SEED,
            options={**INIT_OPTIONS["cw2v"], "init": "small"},
        )
        r = evaluate(emb, task, f)
        write_json(f, {"untrained": r, "init": report["init"]})
        log(f"{name} cw2v (centroid start): nDCG@10 {r['ndcg_at_10']:.4f}")


def run_turkish(log: Callable[[str], None]) -> None:
    f = RUNS / "turkish.json"
    if f.is_file():
        return
    from transformers import AutoTokenizer

    from embedlab.models.backbone import resolve_source
    from embedlab.tokenize import TurkishLexicon, load_tokenizer, tokenizer_metrics
    from embedlab.tokenize.turkish import tr_lower
    from embedlab.vocab.extend import extend_tokenizer
    from embedlab.vocab.selection import Candidate, piece_count, pre_tokens, select_tokens_saved

    lex = TurkishLexicon.load()
    read = lambda p: [line.split("\t", 1)[1] for line in p.read_text(encoding="utf-8").splitlines()[1:] if "\t" in line]  # noqa: E731
    dev, test = (
        read(DATA / "turkish" / "ud_imst_dev_sentences.tsv"),
        read(DATA / "turkish" / "ud_imst_test_sentences.tsv"),
    )
    tok = AutoTokenizer.from_pretrained(resolve_source("smollm2-135m")[0])
    words = [
        c
        for c in select_tokens_saved(tok, dev, 10_000, min_count=2)
        if lex.is_valid(tok.convert_tokens_to_string([c.form]).strip())
    ]
    # suffixes of the morpheme inventory as word-internal pieces, counted as word endings in the dev text
    suffixes = [
        line.split("\t")[0]
        for line in (DATA / "turkish" / "morphemes" / "turkish_tokenizer_suffixes.tsv")
        .read_text(encoding="utf-8")
        .splitlines()[1:]
        if line.strip()
    ]
    dev_words = [w for s in dev for w in s.split()]
    ends: dict[str, int] = {}
    for w in dev_words:
        lw = tr_lower(w.strip(".,;:!?\"'()"))
        for sfx in set(suffixes):
            if len(sfx) >= 2 and lw.endswith(sfx) and len(lw) > len(sfx):
                ends[sfx] = ends.get(sfx, 0) + 1
    sfx_cands = []
    vocab = tok.get_vocab()
    for sfx, c in ends.items():
        forms = pre_tokens(tok, sfx)
        if c >= 2 and len(forms) == 1 and forms[0] not in vocab and piece_count(tok, forms[0]) >= 2:
            sfx_cands.append(Candidate(forms[0], c, piece_count(tok, forms[0])))
    cands = sorted(words + sfx_cands, key=lambda x: (-x.saved, x.form))
    ext = extend_tokenizer(tok, cands, max_new=2000)
    rows = {}
    for label, t in (("smollm2-135m", tok), ("smollm2-135m + Turkish", ext.tokenizer)):
        m = tokenizer_metrics(load_tokenizer(t, name=label), test, lexicon=lex)
        rows[label] = {"fertility": m.fertility, "continued_words": m.continued_words, **m.turkish.to_dict()}
    write_json(
        f,
        {
            "candidates": {"words": len(words), "suffixes": len(sfx_cands)},
            "extension": ext.summary(),
            "dev_sentences": len(dev),
            "test_sentences": len(test),
            "metrics": rows,
            "examples": [t.form for t in ext.added if t.role == "token"][:30],
        },
    )
    log(f"turkish: {ext.summary()}")


# -- report --------------------------------------------------------------------------------------
DOC_INTRO = """\
An embedding model is only as good as the pieces its tokenizer cuts text into: biomedical or Turkish text
is shredded into many meaningless subwords. `embedlab vocab extend` adds domain tokens to a model's
tokenizer *and* embedding table, initialises the new rows with one of six methods from the literature,
and writes a normal embedlab model directory (sentence-transformers layout) that works in `encode`,
`eval`, `train`, `index` and `serve`. The tokenizer quality report (`embedlab tokenizer report`:
fertility, %TR, %Pure, Rényi efficiency) is documented in [tokenizers.md](tokenizers.md); its metrics are
the ones measured here.

## The command

```bash
embedlab vocab extend minilm-l6 --corpus scifact.jsonl --add 2000 --init fvt --out runs/minilm-sci
embedlab vocab extend smollm2-135m --corpus domain.txt --tokens my_terms.txt --init cw2v --out runs/smol-terms
embedlab encode -m runs/minilm-sci -i texts.txt -o vectors.npy      # a normal model from here on
```

* `--corpus FILE`: one text per line, or JSONL with `text` (and `title`, BEIR style); `.gz` works.
* `--add N` chooses new ids from the corpus; `--tokens FILE` takes them from a file (one per line; a
  line with a space is a multiword concept). Exactly one of the two.
* `--select tokens-saved` (default): domain words by tokens saved: the corpus's words that the
  tokenizer splits into ≥ 2 pieces, ranked by `count × (pieces − 1)`, counted after the tokenizer's own
  normalizer and pre-tokenizer (`--min-count`, default 3). `--multiword` adds frequent two-word concepts
  (content words, normalised PMI ≥ 0.3, every probability over the corpus's word positions, as gensim's
  `npmi_scorer`). A frequency heuristic motivated by K-Tokeniser (Hasan et al. 2024), which builds its
  tokens from the semantic types of domain concepts and picks among segmentations by context; neither
  is done here. `--select words`, the old name, still works with a deprecation warning. `--select bpe`:
  the merges of a BPE (a WordPiece for WordPiece models) trained on the corpus with HF `tokenizers`
  whose results the vocabulary lacks, in trained order.
* `--init` one of the six below; `--option KEY=VALUE` passes method settings (`scale=1e-5`, `k=10`,
  `temperature=0.1`, `steps=300`, `rank=64`, `support=4096`); `--seed`.
* It prints how many ids were added (asked-for tokens, BPE merge steps, multiword tokens) and how many
  were skipped as already present, with a progress bar. Tokens already in the vocabulary are skipped
  and counted; an empty corpus, `--add 0`, `--add` with `--tokens`, a tokenizer without a fast (Rust)
  backend, an unknown init: one-line errors. `vocab_extension.json` in the output lists every new id,
  its form, role, corpus count and old piece count, and what the init recorded.

Library: `embedlab.vocab.extend_embedder(embedder, corpus=..., method=..., add=...)` returns a new
Embedder (the input is not modified) and the report; `extend_tokenizer` and `resize_and_init` are the
two halves, usable on any fast tokenizer and HF model.

## How tokens are added (real vocabulary entries, not added tokens)

`tokenizer.add_tokens` in transformers makes *added tokens*, matched as whole strings before the
WordPiece/BPE model runs. embedlab edits the model part of `tokenizer.json` instead, so ordinary text is
cut with the new entries:

* **WordPiece** (BERT, minilm-l6): the entry goes into the vocabulary (word-start form `mitochondrial`,
  or continuation `##ase`); greedy longest-match-first then uses it wherever it fits.
* **Byte-level BPE** (SmolLM2): an entry is only ever produced by a merge, so each new word-start form
  `Ġword` gets a chain of merges from the old segmentation, appended after the old merges (lowest
  priority: every other word is cut exactly as before — tested). A chain's intermediate results
  (`Ġmitoch` on the way to `Ġmitochondria`) become entries too and count towards `--add`. Chains of
  different words can compete for a pair; segmentations are re-checked and chains completed until every
  new word encodes as one token (any left over are reported as unreachable).
* **Multiword concepts** cannot be vocabulary entries (the pre-tokenizer splits at spaces) and become
  added tokens (`single_word`; `lstrip` for byte-level BPE so the leading space is inside the match;
  `normalized` for WordPiece so lower-casing applies).
* The embedding table is resized with `resize_token_embeddings(mean_resizing=False)` and only the new
  rows are written; old rows stay bit-exact. Tied input/output embeddings stay one tensor; an untied
  output matrix gets its own rows from the same method (CW2V trains a second factorisation for it).

## The six initialisations

| `--init` | paper | new row |
|---|---|---|
| `random` | the model's own init (baseline in every paper below) | `model._init_weights` on a fresh table: N(0, initializer_range²) for BERT and Llama |
| `mean` | Hewitt 2021, *Initializing New Word Embeddings for Pretrained Language Models* | the centroid of the old rows |
| `multivariate` | Hewitt 2021; Mundra et al. 2024 | a draw from N(μ, s·Σ) of the old rows, s = 1e-5 as in both (`scale=`) |
| `fvt` | Gee et al. 2022, *Fast Vocabulary Transfer* | the mean of the old rows of the pieces the old tokenizer cuts the token's string into |
| `wechsel` | Minixhofer et al. 2022, *WECHSEL* | Σ softmax(sim/0.1)·E_old over the 10 old tokens nearest in a static fastText space (cosine of the tokens' subword-n-gram vectors); no vector: N(μ, σ²) |
| `cw2v` | Mundra et al. 2024, *An Empirical Comparison of Vocabulary Expansion and Initialization Approaches for Language Models* | softmax(A₁A₂)·E_old trained with skip-gram negative sampling (window 5, 5 negatives from unigram^0.75, frequent-token subsampling) on the corpus tokenized by the new tokenizer, old rows frozen: each row is a convex combination of old rows |

**Deviations, named.** *WECHSEL*: the paper aligns two languages' pretrained fastText spaces (Procrustes
on a bilingual dictionary); those vectors cannot be downloaded here and source and target are one
language, so the static space is a gensim `FastText` (skip-gram, 100-d, n-grams 3–6) trained offline on
the corpus, and the alignment is the identity. *CW2V*: rank 64 instead of 1024, with the authors'
`torch.rand` factors scaled by (1024/64)^¼ so a row's logits spread across the support as much as at
rank 1024 (each new row starts as a peaked mix of a few old rows, not at their centroid); the hull's
support is at most 4,096 old rows instead of all of them: every old piece of a new token's string,
then the old tokens most frequent in the corpus under the *old* tokenizer (a subset of the old rows, so
rows stay in the full hull); a few hundred Adam steps at lr 0.01 instead of 5 epochs at 3e-4. As in the
authors' code, skip-gram pairs never cross a document, and a tied model (their RoBERTa script) has one
factorisation that serves as center and context table; the embedding backbones here (minilm-l6's
BertModel, smollm2-135m's LlamaModel) have no output matrix at all, so they are handled the same way. *Token selection*: `tokens-saved` is a frequency heuristic, not K-Tokeniser's method
(no semantic types, no context-dependent segmentation). ZeTT and dynamic tokenization need a trained
hypernetwork and are not built.
"""


def _observations(name: str, base: dict[str, Any], recs: dict[str, Any]) -> list[str]:
    """What the table says, derived from the numbers (so it cannot go stale)."""
    un = {m: r["untrained"]["ndcg_at_10"] for m, r in recs.items()}
    order = sorted(un, key=lambda m: -un[m])
    out = [
        f"What it says ({name}):",
        "",
        f"* Untrained ranking: {' > '.join(f'`{m}` {fmt(un[m])}' for m in order)} (base {fmt(base['ndcg_at_10'])})."
        + (
            " Every init loses to the unextended model before training: a new row, however chosen, replaces a "
            "sequence of pieces the transformer was trained on by one vector it has never seen."
            if max(un.values()) < base["ndcg_at_10"]
            else ""
        ),
    ]
    f_new = next(iter(recs.values()))["fertility"]
    if base["fertility"] > 1:
        out.append(
            f"* Fertility: the new tokens remove {100 * (base['fertility'] - f_new) / (base['fertility'] - 1):.0f}% "
            f"of the extra pieces (fertility − 1) on held-out SciFact text, but the base is already "
            f"{base['fertility']:.2f} tokens per word (punctuation counts as words with one token each), so "
            "a 15% drop would need nearly every split word to become one token."
        )
    if "mean" in un and "random" in un and un["mean"] < un["random"]:
        out.append(
            "* `mean` (and `multivariate` at Mundra's 1e-5·Σ, which is the centroid up to ~0.3% noise) give "
            "*every* new token (nearly) the same vector, so 2,000 different domain words become one "
            "symbol; for retrieval that is worse than random vectors, which at least keep words apart. The "
            "convex-hull argument of Hewitt and Mundra protects a language model's softmax, not an embedding."
        )
    ad = {m: r["adapted"]["ndcg_at_10"] for m, r in recs.items() if r.get("adapted")}
    if len(ad) >= 2:
        order = sorted(ad, key=lambda m: -ad[m])
        out.append(
            f"* After the short adaptation: {' > '.join(f'`{m}` {fmt(ad[m])}' for m in order)}; the "
            "untrained ranking largely carries over: 20 steps cannot move 2,000 new rows far."
        )
    return out + [""]


def fmt(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}"


def build_report(args: argparse.Namespace) -> None:
    from embedlab.eval.significance import paired_bootstrap

    body = [DOC_INTRO, "## The experiment: SciFact (biomedical)", ""]
    targets: list[str] = []
    plot: dict[str, Any] = {}
    for name, spec in MODELS.items():
        d = RUNS / name
        if not (d / "base.json").is_file():
            body += [f"*{name}: not run yet.*", ""]
            continue
        base = json.loads((d / "base.json").read_text())
        recs = {m: json.loads((d / f"{m}.json").read_text()) for m in spec["inits"] if (d / f"{m}.json").is_file()}
        body += [f"### {name}", ""]
        if not recs:
            body += ["*no init finished yet.*", ""]
            continue
        ext0 = next((r["extension"] for r in recs.values() if "extension" in r), None)
        if ext0 is None:
            body += ["*only rows carried from an earlier run: rerun for the extension's counts.*", ""]
            continue
        body += [
            f"Pooling: {spec['pooling'] or 'the saved chain (mean, normalised)'}; documents truncated to "
            f"{spec['max_length']} tokens. {ext0['added']:,} new ids ({ext0['token']:,} words"
            + (f", {ext0['intermediate']:,} BPE merge steps" if ext0["intermediate"] else "")
            + f"), vocabulary {ext0['old_size']:,} → {ext0['new_size']:,}; candidates skipped as already present "
            f"(for BPE this includes words created moments before as another word's merge step): {ext0['skipped_present']}"
            + (f"; unreachable: {ext0['unreachable']}" if ext0.get("unreachable") else "")
            + ".",
            "",
        ]
        head = "| init | fertility | Δ fertility | nDCG@10 untrained | % of base |"
        sep = "|---|---|---|---|---|"
        if spec["train"]:
            head += " nDCG@10 adapted | Δ vs random adapted [95% CI] |"
            sep += "---|---|"
        body += [head, sep]
        base_f, base_n = base["fertility"], base["ndcg_at_10"]
        row = f"| base (no new tokens) | {base_f:.3f} | – | {fmt(base_n)} | 100.0 |"
        body.append(row + (" – | – |" if spec["train"] else ""))
        rand_ad = recs.get("random", {}).get("adapted")
        for m, r in recs.items():
            un = r["untrained"]["ndcg_at_10"]
            mark = " †" if r.get("carried_from") else ""
            line = (
                f"| `{m}`{mark} | {r['fertility']:.3f} | {100 * (r['fertility'] / base_f - 1):+.1f}% | {fmt(un)} | "
                f"{100 * un / base_n:.1f} |"
            )
            if spec["train"]:
                ad = r.get("adapted")
                if ad and rand_ad and m != "random" and ad.get("per_example") and rand_ad.get("per_example"):
                    b = paired_bootstrap(rand_ad["per_example"], ad["per_example"], resamples=2000, seed=0)
                    line += f" {fmt(ad['ndcg_at_10'])} | {fmt(b.delta):s} [{fmt(b.ci_low)}, {fmt(b.ci_high)}] |"
                elif ad:
                    line += f" {fmt(ad['ndcg_at_10'])} | – |"
                else:
                    line += " not run | – |"
            body.append(line)
        body.append("")
        carried = sorted({r["carried_from"] for r in recs.values() if r.get("carried_from")})
        if carried:
            body += [
                f"† carried from the run behind docs/vocabulary.md at commit {', '.join(carried)} (same candidates, "
                "seeds and settings; not rerun in the last session, so no CI against it); the other rows were rerun.",
                "",
            ]
        body += _observations(name, base, recs)
        if "cw2v" in recs and name in CW2V_BEFORE:
            before, now = CW2V_BEFORE[name], recs["cw2v"]
            line = (
                f"* CW2V before the issue-22.13 fixes (commit 2fb8ab3: skip-gram pairs crossed documents, the hull's "
                f"support lacked the pieces merged into new tokens, every row started at the support's centroid): "
                f"{fmt(before['untrained'])} untrained ({100 * before['untrained'] / base['ndcg_at_10']:.1f}% of base)"
                + (f", {fmt(before['adapted'])} adapted" if "adapted" in before else "")
                + f"; now {fmt(now['untrained']['ndcg_at_10'])} ({100 * now['untrained']['ndcg_at_10'] / base['ndcg_at_10']:.1f}%)"
                + (f", {fmt(now['adapted']['ndcg_at_10'])} adapted" if now.get("adapted") else "")
                + "."
            )
            init = now["extension"]["init"]
            if "centroid_distance" in init:
                line += (
                    f" Its rows end {init['centroid_distance']:.2f} support-spreads from the centroid, a mix of "
                    f"{init['effective_support']:.1f} old rows on average (exp of the weights' entropy), over a "
                    f"support of {init['support']:,} rows and {init['pairs']:,} skip-gram pairs."
                )
            if "loss_last" in init and init.get("pairs"):
                epochs = init["steps"] * INIT_OPTIONS["cw2v"]["batch"] / init["pairs"]
                line += (
                    f" The SGNS loss goes from {init['loss_first']:.2f} to {init['loss_last']:.2f} in "
                    f"{init['steps']} steps, {epochs:.2f} epochs of the pairs (the paper trains 5 epochs)."
                )
            abl = d / "cw2v_centroid.json"
            if abl.is_file():
                a = json.loads(abl.read_text())
                line += (
                    f" Ablation: the same fixed CW2V with every row starting at the centroid (`--option init=small`, "
                    f"the old start): {fmt(a['untrained']['ndcg_at_10'])} untrained "
                    f"({a['init'].get('centroid_distance', float('nan')):.2f} support-spreads from the centroid after training)"
                    + (
                        ": the old score again, so at this training budget the rows' start, not the pair or support "
                        "fixes, is what changed the score."
                        if abs(a["untrained"]["ndcg_at_10"] - before["untrained"])
                        < abs(now["untrained"]["ndcg_at_10"] - before["untrained"]) / 3
                        else "."
                    )
                )
            body += [line, ""]
        plot[name] = (
            base_n,
            {m: (r["untrained"]["ndcg_at_10"], (r.get("adapted") or {}).get("ndcg_at_10")) for m, r in recs.items()},
        )
        # targets
        any_f = next(iter(recs.values()))["fertility"]
        drop = 1 - any_f / base_f
        targets.append(
            f"- {name}: fertility on SciFact text drops by ≥ 15%: **{'met' if drop >= 0.15 else 'missed'}** "
            f"({100 * drop:.1f}%, {base_f:.3f} → {any_f:.3f} tokens per word)."
        )
        best_u = max(recs, key=lambda m: recs[m]["untrained"]["ndcg_at_10"])
        keep = recs[best_u]["untrained"]["ndcg_at_10"] / base_n
        targets.append(
            f"- {name}: best init keeps ≥ 98% of base nDCG@10 untrained: **{'met' if keep >= 0.98 else 'missed'}** "
            f"(`{best_u}`: {100 * keep:.1f}% of {fmt(base_n)}; inits run: {', '.join(recs)})."
        )
        if spec["train"]:
            adapted = {
                m: r["adapted"]
                for m, r in recs.items()
                if r.get("adapted") and m != "random" and r["adapted"].get("per_example")
            }
            if adapted and rand_ad and rand_ad.get("per_example"):
                best_a = max(adapted, key=lambda m: adapted[m]["ndcg_at_10"])
                b = paired_bootstrap(rand_ad["per_example"], adapted[best_a]["per_example"], resamples=2000, seed=0)
                ok = b.ci_low > 0
                targets.append(
                    f"- {name}: after adaptation the best init beats `random` with its CI: **{'met' if ok else 'missed'}** "
                    f"(`{best_a}` {fmt(adapted[best_a]['ndcg_at_10'])} vs {fmt(rand_ad['ndcg_at_10'])}: "
                    f"Δ {fmt(b.delta)} [{fmt(b.ci_low)}, {fmt(b.ci_high)}], paired bootstrap over "
                    f"{b.n} queries, p = {b.p_value:.3f})."
                )
            elif any(r.get("carried_from") and r.get("adapted") for r in recs.values()):
                c = ", ".join(sorted({r["carried_from"] for r in recs.values() if r.get("carried_from")}))
                targets.append(
                    f"- {name}: after adaptation the best init beats `random` with its CI: not rerun (the "
                    f"adapted rows are carried from commit {c}, whose table gives the CI)."
                )
            else:
                targets.append(f"- {name}: adaptation target: not measured yet.")
        else:
            targets.append(f"- {name}: adaptation: **not run** (CPU budget; see reductions).")
    body += [
        "Scores ×100. Fertility = tokens per word (words: `\\w+|[^\\w\\s]`, part 1's `tokenizer_metrics`) on the "
        "evaluation documents and the test queries, which were held out of token selection. Δ vs random: "
        "paired bootstrap over queries (`embedlab.eval.significance.paired_bootstrap`, 2,000 resamples).",
        "",
    ]
    body += ["![nDCG@10 per init](vocabulary.png)", ""] if plot else []
    tk = RUNS / "turkish.json"
    body += ["## Turkish: smollm2-135m", ""]
    if tk.is_file():
        t = json.loads(tk.read_text())
        e = t["extension"]
        body += [
            f"New tokens chosen from the UD Turkish-IMST **dev** sentences ({t['dev_sentences']:,}): words the "
            f"tokenizer splits that are in the Turkish lexicon ({t['candidates']['words']:,} candidates, count ≥ 2), "
            f"and suffixes of the morpheme inventory (`turkish_tokenizer_suffixes.tsv`) seen as word endings "
            f"({t['candidates']['suffixes']:,} candidates, as word-internal pieces), ranked by tokens saved: "
            f"{e['added']:,} new ids ({e['token']:,} words/suffixes, {e['intermediate']:,} BPE merge steps). "
            f"Measured on the **test** sentences ({t['test_sentences']:,}); lexicon: the offline lists of "
            f"`../shared/data/turkish/morphemes/` (part 1's `TurkishLexicon`; the paper queries web services).",
            "",
            "| tokenizer | fertility | continued words | %TR (tokens) | %Pure (tokens) | %TR (types) | %Pure (types) |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, m in t["metrics"].items():
            body.append(
                f"| {label} | {m['fertility']:.3f} | {fmt(m['continued_words'], 1)} | {fmt(m['tr_tokens'], 1)} | "
                f"{fmt(m['pure_tokens'], 1)} | {fmt(m['tr_types'], 1)} | {fmt(m['pure_types'], 1)} |"
            )
        rows = list(t["metrics"].values())
        drop = 1 - rows[1]["fertility"] / rows[0]["fertility"]
        from tokenizers import decoders

        dec = decoders.ByteLevel()
        shown = [dec.decode([x]) for x in t["examples"][:16]]
        shown = [x.strip() if x.startswith(" ") else "-" + x for x in shown]  # "-ler": a word-internal piece
        body += [
            "",
            "Tokenizer only: the Turkish extension was not scored on a downstream task. Most-saving new "
            "tokens (`-x` = word-internal piece): " + ", ".join(f"`{x}`" for x in shown),
            "",
        ]
        targets.append(
            f"- Turkish (smollm2-135m, UD test): fertility {rows[0]['fertility']:.3f} → {rows[1]['fertility']:.3f} "
            f"({100 * drop:.1f}% drop; the ≥ 15% target is stated for the domain text, reported here too: "
            f"**{'met' if drop >= 0.15 else 'missed'}**); %TR (types) {fmt(rows[0]['tr_types'], 1)} → "
            f"{fmt(rows[1]['tr_types'], 1)}, %Pure (types) {fmt(rows[0]['pure_types'], 1)} → {fmt(rows[1]['pure_types'], 1)}."
        )
    else:
        body += ["*not run yet.*", ""]
    body += ["## Targets", ""] + targets + [""]
    body += [
        "## Reductions for a shared 2-core CPU (named)",
        "",
        "* SciFact subsample: all 300 test queries, their relevant documents, and "
        f"{MODELS['minilm-l6']['distractors']} seeded random distractors for minilm-l6 "
        f"({MODELS['smollm2-135m']['distractors']} for smollm2-135m), documents truncated to "
        f"{MODELS['minilm-l6']['max_length']} / {MODELS['smollm2-135m']['max_length']} tokens; so nDCG@10 is "
        "higher than on the full 5,183-document corpus and not comparable with MTEB's SciFact.",
        "* Token selection, WECHSEL's fastText space and CW2V's SGNS use the other SciFact documents "
        "(the evaluation documents are held out).",
        f"* Adaptation: {TRAIN['steps']} steps × {TRAIN['batch_size']} `scifact-train` queries, in-batch negatives, "
        f"lr {TRAIN['lr']}, full fine-tuning (embeddings included), no instruction; every init on minilm-l6, "
        f"{' and '.join(MODELS['smollm2-135m']['train'])} on smollm2-135m.",
        f"* smollm2-135m (~350 tokens/s here): every init untrained, but only "
        f"{' and '.join(MODELS['smollm2-135m']['train'])} adapted (the CPU budget); no distractor documents. "
        "Its fertility row is the same for every init (same tokenizer).",
        f"* CW2V: {INIT_OPTIONS['cw2v']['steps']} Adam steps of {INIT_OPTIONS['cw2v']['batch']} pairs, rank "
        f"{INIT_OPTIONS['cw2v']['rank']}, support {INIT_OPTIONS['cw2v']['support']}; WECHSEL: "
        f"{INIT_OPTIONS['wechsel']['epochs']} fastText epochs.",
        "",
    ]
    write_markdown(REPO / "docs" / "vocabulary.md", "Vocabulary expansion", body)
    write_records()
    if plot:
        _plot(plot)


def write_records() -> None:
    """docs/vocabulary.json: every finished record (and the candidates), so one init can be rerun alone."""
    out: dict[str, Any] = {"models": {}}
    for name, spec in MODELS.items():
        d = RUNS / name
        m: dict[str, Any] = {}
        for key in ("base", "candidates", "cw2v_centroid"):
            if (d / f"{key}.json").is_file():
                m[key] = json.loads((d / f"{key}.json").read_text())
        m["inits"] = {
            i: json.loads((d / f"{i}.json").read_text()) for i in spec["inits"] if (d / f"{i}.json").is_file()
        }
        out["models"][name] = m
    if (RUNS / "turkish.json").is_file():
        out["turkish"] = json.loads((RUNS / "turkish.json").read_text())
    with atomic_path(RECORDS) as tmp:  # compact: per-query scores make an indented file long
        tmp.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def _plot(plot: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(plot), figsize=(6 * len(plot), 4), squeeze=False)
    for ax, (name, (base, rows)) in zip(axes[0], plot.items()):
        names = list(rows)
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [100 * rows[m][0] for m in names], 0.4, label="untrained")
        ax.bar([i + 0.2 for i in x], [100 * (rows[m][1] or 0) for m in names], 0.4, label="after adaptation")
        ax.axhline(100 * base, color="k", ls="--", lw=1, label="base model")
        ax.set_xticks(list(x), names)
        ax.set_title(f"{name}: SciFact subsample nDCG@10")
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = RUNS / "vocabulary.png"
    fig.savefig(tmp, dpi=110)
    copy_file(tmp, REPO / "docs" / "vocabulary.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-minutes", type=float, default=9.0, help="stop cleanly before this much time (rerun resumes)")
    ap.add_argument("--only", choices=["minilm-l6", "smollm2-135m", "turkish", "report"], default=None)
    ap.add_argument("--inits", default=None, help=f"comma-separated inits to run (default: all of {', '.join(INITS)})")
    ap.add_argument(
        "--redo", action="store_true", help="discard the finished records of the chosen inits and run them anew"
    )
    ap.add_argument(
        "--carry",
        default=None,
        metavar="COMMIT",
        help="report rows not run yet from docs/vocabulary.md at COMMIT, marked as carried",
    )
    args = ap.parse_args()
    inits = tuple(x.strip() for x in args.inits.split(",") if x.strip()) if args.inits else None
    if inits is not None and (not inits or set(inits) - set(INITS)):
        ap.error(f"--inits takes a comma-separated subset of {', '.join(INITS)}; got {args.inits!r}")
    budget = Budget(args.max_minutes)
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    RUNS.mkdir(parents=True, exist_ok=True)
    chosen = [n for n in MODELS if args.only in (None, n)]
    redo = {n: inits or INITS for n in chosen} if args.redo else {}
    seed_runs(redo)
    for n, methods in redo.items():
        forget(n, methods)
    done = True
    if args.carry:
        carry(args.carry)
    try:
        if args.only in (None, "turkish"):
            run_turkish(log)
        for name in chosen:
            run_model(name, MODELS[name], budget, log, inits)
    except OutOfTime as exc:
        log(str(exc))
        done = False
    build_report(args)
    log("all done" if done else "partial: rerun to resume")


if __name__ == "__main__":
    main()
