"""Static distillation: teacher vs its static students (embedlab distill) vs model2vec's own distillation.

For each teacher, in stages that each stay under ~10 minutes on a 2-core CPU and resume from
``runs/static_distill/<teacher>/`` (gitignored):

* ``distill``: the token vectors (each vocabulary token alone through the teacher's chain, cached as
  ``token_vectors.npy``), then the students: ``zipf`` (PCA 256 + Zipf weights, embedlab's default),
  ``sif`` (PCA 256 + SIF weights from real token frequencies of a corpus of *train* splits of the shared
  data, no test text), ``plain`` (no PCA, no weights: the ablation), and for minilm-l6 the peer: model2vec
  0.10.0's own ``distill(pca_dims=256)`` run in its own venv (``bench/_model2vec_peer.py``).
* ``eval``: every task in ``--tasks`` for the teacher (embedding cache on) and each student; one JSON per
  task as ``embedlab eval`` writes it.
* ``speed``: sentences/s on the same texts (the unique STS-B test sentences) for the teacher (fp32 and bf16)
  and the student (embedlab's numpy encode, and model2vec's ``StaticModel.encode`` on the same folder),
  one process, median of repeats.
* ``report``: docs/static.md and docs/static.png from what the stages left.

    python bench/static_distill.py --teacher minilm-l6 --stage all
    python bench/static_distill.py --teacher smollm2-135m --stage distill   # then eval, speed, report
"""
from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import REPO, write_markdown  # noqa: E402

RUNS = REPO / "runs" / "static_distill"
DATA = REPO.parent / "shared" / "data"
STS = ["STSBenchmark", "SICK-R", "STS12", "STS14", "STS15"]
CLASSIFICATION = ["Banking77Classification", "AmazonCounterfactualClassification",
                  "TweetSentimentExtractionClassification", "MR", "CR"]
RETRIEVAL = ["SciFact"]
DEFAULT_TASKS = STS + CLASSIFICATION + RETRIEVAL
TEACHERS = {  # name -> Embedder.from_pretrained options
    "minilm-l6": {},
    "smollm2-135m": {"pooling": "mean", "attention": "bidirectional"},
}
# train splits only (no evaluated test text): (file, text columns)
SIF_CORPUS = [
    ("stsbenchmark/train.tsv", ("sentence1", "sentence2")),
    ("snli/validation.tsv", ("premise", "hypothesis")),
    ("banking77/train.tsv", ("text",)),
    ("tweet-sentiment-extraction/train.tsv", ("text",)),
    ("amazon-counterfactual/en/train.tsv", ("text",)),
    ("amazon-counterfactual/en-ext/train.tsv", ("text",)),
    ("sst2/train.tsv.gz", ("text",)),
    ("twentynewsgroups/train_subjects.tsv", ("subject",)),
    ("imdb/train_subset_2000.tsv.gz", ("text",)),
]


def read_tsv_columns(path: Path, columns: tuple[str, ...]) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        idx = [header.index(c) for c in columns]
        out = []
        for line in f:
            cells = line.rstrip("\n").split("\t")
            out.extend(cells[i] for i in idx if i < len(cells) and cells[i].strip())
    return out


def sif_corpus() -> list[str]:
    texts: list[str] = []
    for rel, cols in SIF_CORPUS:
        texts.extend(read_tsv_columns(DATA / rel, cols))
    return texts


def load_teacher(name: str):  # noqa: ANN201
    import embedlab

    return embedlab.load(name, **TEACHERS.get(name, {}))


def tdir(name: str) -> Path:
    return RUNS / name


# -- stages -------------------------------------------------------------------------------------
def stage_distill(name: str, peer: bool) -> None:
    from embedlab.models.static import distill, token_vectors

    root = tdir(name)
    root.mkdir(parents=True, exist_ok=True)
    teacher = load_teacher(name)
    cache = root / "token_vectors.npy"
    timing_file = root / "distill_timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    if cache.is_file():
        vectors = np.load(cache)
    else:
        start = time.perf_counter()
        vectors = token_vectors(teacher, show_progress=True)
        timing["token_vectors_s"] = round(time.perf_counter() - start, 1)
        np.save(cache, vectors)
    corpus = sif_corpus()
    # a of the SIF weights, chosen on STS-B *dev* (Zipf keeps model2vec's default a = 1e-4; its dev scores
    # for the same grid are reported too)
    sweep = {}
    for weighting in ("sif", "zipf"):
        for a in SIF_GRID:
            model, _ = distill(teacher, vectors=vectors, dims=256, weighting=weighting, sif_coefficient=a,
                               corpus=corpus if weighting == "sif" else None)
            sweep.setdefault(weighting, {})[str(a)] = round(100 * stsb_dev(model), 2)
    best_a = float(max(sweep["sif"], key=lambda k: sweep["sif"][k]))
    timing["a_sweep_stsb_dev"] = sweep
    timing["sif_a"] = best_a
    print(f"{name}: STS-B dev by a: {sweep}; SIF uses a = {best_a:g}")
    for student, kwargs in (("zipf", {"dims": 256}), ("sif", {"dims": 256, "corpus": corpus, "sif_coefficient": best_a}),
                            ("plain", {"dims": None, "weighting": "none"})):
        model, provenance = distill(teacher, vectors=vectors, **kwargs)
        provenance["teacher_name"] = name
        if student == "sif":
            provenance["corpus"]["files"] = [rel for rel, _ in SIF_CORPUS]
        model.save(root / student, provenance=provenance)
        print(f"{name}: {student} student saved ({provenance['weighting']}, dims {provenance['dims']})")
    if peer:
        from _model2vec_peer import distill_in_venv

        info = distill_in_venv(_teacher_dir(name), str(root / "peer_model2vec"), pca_dims=256)
        timing["peer"] = info
        print(f"{name}: model2vec's own distillation in {info['seconds']} s")
    timing_file.write_text(json.dumps(timing, indent=2) + "\n")


SIF_GRID = [1e-5, 1e-4, 1e-3, 1e-2]


def stsb_dev(model) -> float:  # noqa: ANN001
    """Spearman of pair cosines on STS-B dev (1,500 pairs): the split used to choose a, never reported as a score."""
    from scipy.stats import spearmanr

    path = DATA / "stsbenchmark" / "dev.tsv"
    left, right = read_tsv_columns(path, ("sentence1",)), read_tsv_columns(path, ("sentence2",))
    gold = [float(x) for x in read_tsv_columns(path, ("score",))]
    assert len(left) == len(right) == len(gold), "STS-B dev has empty cells"
    x, y = model.encode(left), model.encode(right)
    cos = (x * y).sum(axis=1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12)
    return float(spearmanr(cos, gold).statistic)


def _teacher_dir(name: str) -> str:
    from embedlab.models.backbone import resolve_source

    return resolve_source(name)[0]


def models_of(name: str) -> dict[str, Path | None]:
    root = tdir(name)
    out: dict[str, Path | None] = {"teacher": None}
    for student in ("zipf", "sif", "plain", "peer_model2vec"):
        if (root / student).is_dir():
            out[student] = root / student
    return out


def stage_eval(name: str, tasks: list[str], only: list[str] | None) -> None:
    import embedlab
    from embedlab.eval.registry import builtin_tasks
    from embedlab.eval.runner import EmbeddingCache, result_path, run_task

    available = builtin_tasks()
    for model_name, path in models_of(name).items():
        if only and model_name not in only:
            continue
        emb = load_teacher(name) if path is None else embedlab.load(str(path))
        out = tdir(name) / "results" / model_name
        for task_name in tasks:
            task = available[task_name]
            if result_path(out, task).is_file():
                continue
            start = time.perf_counter()
            r = run_task(task, emb, out, cache=EmbeddingCache() if path is None else None)
            print(f"{name}/{model_name}/{task_name}: {100 * r['main_score']:.2f} ({time.perf_counter() - start:.1f} s)",
                  flush=True)


def speed_texts() -> list[str]:
    texts = read_tsv_columns(DATA / "stsbenchmark" / "test.tsv", ("sentence1", "sentence2"))
    return list(dict.fromkeys(texts))


def _rate(fn, n: int, repeats: int, min_seconds: float = 0.0) -> tuple[float, list[float]]:  # noqa: ANN001
    """Median texts/s over ``repeats`` runs (each repeated until it lasts ``min_seconds``)."""
    rates = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(calls * n / elapsed)
    return statistics.median(rates), rates


def stage_speed(name: str, bf16_texts: int) -> None:
    import embedlab
    from model2vec import StaticModel

    texts = speed_texts()
    teacher = load_teacher(name)
    student = embedlab.load(str(tdir(name) / "zipf"))
    m2v = StaticModel.from_pretrained(str(tdir(name) / "zipf"))
    teacher.encode(texts[:64])
    student.encode(texts[:64])
    m2v.encode(texts[:64])
    result = {"texts": len(texts), "tokens_per_text": round(float(np.mean([len(x) for x in teacher.tokenize(texts).ids])), 1)}
    rate, runs = _rate(lambda: teacher.encode(texts, dtype="fp32"), len(texts), 3)
    result["teacher_fp32"] = {"rate": rate, "runs": runs}
    sub = texts[:bf16_texts]
    rate, runs = _rate(lambda: teacher.encode(sub, dtype="bf16"), len(sub), 1)
    result["teacher_bf16"] = {"rate": rate, "runs": runs, "texts": len(sub)}
    rate, runs = _rate(lambda: student.encode(texts), len(texts), 5, min_seconds=1.0)
    result["student_embedlab"] = {"rate": rate, "runs": runs}
    rate, runs = _rate(lambda: m2v.encode(texts, use_multiprocessing=False), len(texts), 5, min_seconds=1.0)
    result["student_model2vec"] = {"rate": rate, "runs": runs}
    same = np.abs(student.encode(texts) - m2v.encode(texts)).max()
    result["max_abs_diff_embedlab_vs_model2vec"] = float(same)
    (tdir(name) / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: (v["rate"] if isinstance(v, dict) else v) for k, v in result.items()}, indent=1))


# -- report -------------------------------------------------------------------------------------
def load_scores(name: str) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    root = tdir(name) / "results"
    if not root.is_dir():
        return out
    for model_dir in sorted(root.iterdir()):
        out[model_dir.name] = {p.stem: json.loads(p.read_text()) for p in model_dir.glob("*.json")}
    return out


LABELS = {"teacher": "teacher", "zipf": "embedlab static (PCA 256, Zipf)", "sif": "embedlab static (PCA 256, SIF corpus)",
          "plain": "embedlab static (no PCA, no weights)", "peer_model2vec": "model2vec 0.10.0 distill (PCA 256, Zipf)"}


def pair_agreement(a_dir: Path, b_dir: Path) -> dict[str, float]:
    """How alike two static models are on the STS-B test pairs: Spearman between their pair cosines,
    and the mean |difference| of the cosines (PCA axes may differ in sign, so vectors are not compared)."""
    import embedlab
    from scipy.stats import spearmanr

    left = read_tsv_columns(DATA / "stsbenchmark" / "test.tsv", ("sentence1",))
    right = read_tsv_columns(DATA / "stsbenchmark" / "test.tsv", ("sentence2",))
    cos = []
    for d in (a_dir, b_dir):
        m = embedlab.load(str(d), normalize=True)
        x, y = m.encode(left), m.encode(right)
        cos.append((x * y).sum(axis=1))
    return {"spearman": float(spearmanr(cos[0], cos[1]).statistic), "mean_abs_diff": float(np.abs(cos[0] - cos[1]).mean())}


def _demote(markdown: str) -> list[str]:
    """An embedded report's headings, moved below this page's ### level."""
    return [("#### " + line.lstrip("#").strip()) if line.startswith("#") else line for line in markdown.splitlines()]


def teacher_section(name: str, tasks: list[str], png_rows: list) -> list[str]:
    from embedlab.eval.report import compare, to_markdown

    scores = load_scores(name)
    if "teacher" not in scores:
        return [f"## {name}", "", "No results yet (run the eval stage).", ""]
    models = [m for m in ("teacher", "zipf", "sif", "plain", "peer_model2vec") if m in scores]
    done = [t for t in tasks if all(t in scores[m] for m in models)]
    lines = [f"## Teacher `{name}`" + (f" ({', '.join(f'{k} {v}' for k, v in TEACHERS[name].items())})" if TEACHERS.get(name) else ""), ""]
    timing_file = tdir(name) / "distill_timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    prov = json.loads((tdir(name) / "zipf" / "embedlab_static.json").read_text())
    sif_prov = json.loads((tdir(name) / "sif" / "embedlab_static.json").read_text())
    sweep = timing.get("a_sweep_stsb_dev", {})
    lines += [f"- vocabulary: {prov['vocabulary']:,} tokens, {prov.get('emittable_tokens', prov['vocabulary']):,} of which a text "
              f"can produce (ranked for Zipf; the PCA is fitted on them); PCA 256 keeps {100 * prov['explained_variance']:.1f}% "
              f"of their variance",
              f"- a in a/(a + p): Zipf keeps model2vec's {prov['sif_coefficient']:g}; SIF uses {sif_prov['sif_coefficient']:g}, "
              "the best on STS-B *dev* (Spearman ×100 by a: "
              + "; ".join(f"{w}: " + ", ".join(f"{float(a):g} → {v}" for a, v in d.items()) for w, d in sweep.items()) + ")",
              f"- embedlab's token pass (every token through the teacher): {timing.get('token_vectors_s', '?')} s"
              + (f"; model2vec's whole distillation: {timing['peer']['seconds']} s (model2vec {timing['peer']['model2vec']}, "
                 f"transformers {timing['peer']['transformers']} in its own venv)" if "peer" in timing else ""),
              f"- SIF corpus: {sif_prov['corpus']['texts']:,} texts, {sif_prov['corpus']['tokens']:,} tokens, "
              f"{sif_prov['corpus']['tokens_seen']:,} distinct tokens seen (train splits: "
              + ", ".join(f"`{f}`" for f in sif_prov["corpus"].get("files", [])) + ")", ""]
    header = "| task | " + " | ".join(LABELS[m] for m in models) + " |"
    lines += [header, "|---" * (len(models) + 1) + "|"]
    avg = {}
    for t in done:
        lines.append(f"| {t} | " + " | ".join(f"{100 * scores[m][t]['main_score']:.2f}" for m in models) + " |")
    for label, group in (("STS average", STS), ("classification average", CLASSIFICATION), ("retrieval (SciFact)", RETRIEVAL),
                         ("**average, all tasks**", done)):
        group = [t for t in group if t in done]
        if not group:
            continue
        vals = {m: 100 * float(np.mean([scores[m][t]["main_score"] for t in group])) for m in models}
        avg[label] = vals
        lines.append(f"| {label} | " + " | ".join(f"{vals[m]:.2f}" for m in models) + " |")
    overall = avg.get("**average, all tasks**", {})
    if overall:
        lines.append("| **% of the teacher's average** | " + " | ".join(
            f"{100 * overall[m] / overall['teacher']:.1f}%" for m in models) + " |")
    lines.append("")
    missing = [t for t in tasks if t not in done]
    if missing:
        lines += [f"Tasks without every model's result (left out above): {', '.join(missing)}.", ""]
    # SIF vs Zipf, with CIs (embedlab.eval.report: paired bootstrap per task, hierarchical per category)
    res = tdir(name) / "results"
    if "sif" in models:
        cmp = compare([res / "zipf", res / "sif"], resamples=1000, seed=0)
        from embedlab.eval.significance import hierarchical_bootstrap

        both = [t for t in done if t in scores["sif"] and t in scores["zipf"]]
        hier = hierarchical_bootstrap([(scores["zipf"][t]["per_example"], scores["sif"][t]["per_example"]) for t in both],
                                      resamples=1000, seed=0)
        lines += ["### SIF from a real corpus vs Zipf by rank (same PCA; Δ = SIF − Zipf, points ×100)", "",
                  f"Over all {len(both)} tasks: mean Δ **{100 * hier.delta:+.2f}** points, hierarchical-bootstrap 95% CI "
                  f"[{100 * hier.ci_low:+.2f}, {100 * hier.ci_high:+.2f}] (datasets, then items, resampled; 1000 resamples).", "",
                  *_demote(to_markdown(cmp)), ""]
    if "peer_model2vec" in models:
        cmp = compare([res / "peer_model2vec", res / "zipf"], resamples=1000, seed=0)
        agree = pair_agreement(tdir(name) / "zipf", tdir(name) / "peer_model2vec")
        lines += ["### embedlab's Zipf student vs model2vec's own distillation (Δ = embedlab − model2vec)", "",
                  *_demote(to_markdown(cmp)), "",
                  f"Agreement of the two static models on the 1,379 STS-B test pairs: Spearman of their pair cosines "
                  f"**{agree['spearman']:.4f}**, mean |Δ cosine| {agree['mean_abs_diff']:.4f}.", ""]
    speed_file = tdir(name) / "speed.json"
    if speed_file.is_file():
        sp = json.loads(speed_file.read_text())
        t32 = sp["teacher_fp32"]["rate"]
        lines += [f"### Encode speed ({sp['texts']:,} unique STS-B test sentences, {sp['tokens_per_text']} teacher tokens each on average, one process)", "",
                  "| encoder | sentences/s (median) | runs | × teacher fp32 |", "|---|---|---|---|"]
        for key, label in (("teacher_fp32", "teacher, fp32"), ("teacher_bf16", f"teacher, bf16 (emulated on this CPU; {sp['teacher_bf16']['texts']} texts)"),
                           ("student_embedlab", "static student, embedlab `encode` (numpy)"),
                           ("student_model2vec", "same folder, `model2vec.StaticModel.encode`")):
            r = sp[key]
            lines.append(f"| {label} | {r['rate']:,.0f} | {', '.join(f'{x:,.0f}' for x in r['runs'])} | {r['rate'] / t32:,.1f}× |")
        lines += ["", f"embedlab's and model2vec's encodings of these texts differ by at most {sp['max_abs_diff_embedlab_vs_model2vec']:.1e}.", ""]
    png_rows.append((name, models, done, scores))
    return lines


def plot(png_rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(png_rows), 1, figsize=(12, 4.2 * len(png_rows)), squeeze=False)
    for ax, (name, models, tasks, scores) in zip(axes[:, 0], png_rows):
        width = 0.8 / len(models)
        x = np.arange(len(tasks))
        for i, m in enumerate(models):
            ax.bar(x + i * width, [100 * scores[m][t]["main_score"] for t in tasks], width, label=LABELS[m])
        ax.set_xticks(x + 0.4 - width / 2, tasks, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel("main score ×100")
        ax.set_title(f"teacher {name} and its static students")
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_report(teachers: list[str], tasks: list[str], out: Path) -> None:
    from _report import copy_file

    png_rows: list = []
    body = ["`embedlab distill MODEL --out DIR` turns any embedlab model into a static embedder: one vector per vocabulary "
            "token, a sentence is the mean of its tokens' vectors (see the bottom of this page for how). Scores are each "
            "task's main metric ×100 as `embedlab eval` computes it; tasks: " + ", ".join(tasks) + ". SST2 and Imdb are left "
            "out: their teacher encodes (67k and 27k texts) take 10–40 minutes on this 2-core CPU.", ""]
    for name in teachers:
        body += teacher_section(name, tasks, png_rows)
    missing = [t for t in TEACHERS if t not in teachers]
    if missing:
        body += [f"Not measured yet: teacher(s) {', '.join(f'`{t}`' for t in missing)} (the machine's one CPU lock was "
                 "busy with other benchmarks); `python bench/static_distill.py --teacher smollm2-135m --stage distill`, "
                 "then `--stage eval --tasks STSBenchmark,STS15` (its fp32 teacher, at ~350 tokens/s here, would encode only ~20 sentences/s: an estimate, not measured), "
                 "`--stage speed`, `--stage report` add it.", ""]
    png = out.with_suffix(".png")
    if png_rows:
        tmp = RUNS / png.name
        plot(png_rows, tmp)
        copy_file(tmp, png)
        body += [f"![teacher vs static students]({png.name})", ""]
    body += [
        "## Use",
        "",
        "```bash",
        "embedlab distill minilm-l6 --out static/                 # PCA 256, Zipf weights (model2vec's recipe)",
        "embedlab distill minilm-l6 --out static-sif/ --corpus texts.txt --sif-a 1e-3   # SIF weights from real frequencies",
        "embedlab distill smollm2-135m --pooling mean --attention bidirectional --out static-llm/",
        "embedlab distill my-saved-embedder/ --prompt query --out static-q/   # the teacher's named prompt before every token",
        "embedlab encode -m static/ -i texts.txt -o vectors.npy   # and eval, index build, search, serve, info",
        "```",
        "",
        "```python",
        "import embedlab",
        "from embedlab.models.static import distill",
        "student, provenance = distill(embedlab.load(\"minilm-l6\"), dims=256)   # corpus=..., prompt_name=...",
        "student.save(\"static/\", provenance=provenance)",
        "vecs = embedlab.load(\"static/\").encode([\"a cat sits on the mat\"])   # numpy, no torch in the loop",
        "",
        "from model2vec import StaticModel                      # the same folder, the same vectors",
        "StaticModel.from_pretrained(\"static/\").encode([\"a cat sits on the mat\"])",
        "from sentence_transformers import SentenceTransformer   # loads as StaticEmbedding + Normalize",
        "SentenceTransformer(\"static/\")",
        "```",
        "",
        "Bad input is a one-line error: `--dims` larger than the teacher's output width, a teacher whose tokenizer has no "
        "vocabulary to read (a slow, Python-only tokenizer), an empty corpus or one that gives no token, an unknown "
        "`--prompt`, a static model as the teacher. A static model refuses options it cannot have (`--pooling` other than "
        "mean, `--attention`). Prompts are not kept in the student (model2vec has none): `--prompt` bakes the teacher's "
        "prompt into every row instead; distil once per prompt for asymmetric retrieval.",
        "",
        "## How it works",
        "",
        "1. Every vocabulary token goes alone through the teacher's own chain: its special tokens, the named prompt "
        "(`--prompt`), its attention mode, its pooling head, any projection or Matryoshka truncation; the final L2 "
        "normalisation is left out (model2vec pools the bare transformer the same way).",
        "2. PCA to `--dims` (default 256; centred, eigenvectors of the covariance).",
        "3. Each row times a / (a + p(w)), a = 1e-4: p from Zipf's law over the token id order (model2vec's rule) "
        "without a corpus; p = the token's relative frequency in `--corpus` with one (SIF, Arora et al. 2017; tokens the "
        "corpus never shows keep weight 1). Arora et al.'s removal of the first principal component is not applied.",
        "4. The folder is model2vec's layout (config.json `model_type: model2vec`, model.safetensors `embeddings`, "
        "tokenizer.json) plus a sentence-transformers modules.json (`StaticEmbedding` at the root, then `Normalize`) and "
        "`embedlab_static.json` (teacher, fingerprint, prompt, weights, corpus hash).",
        "",
        "Tokenizing is model2vec's: no special tokens, each text cut to max_length × the vocabulary's median token length "
        "characters and then to max_length (512) tokens, unknown tokens dropped; a text with no known token is the zero "
        "vector (never NaN).",
    ]
    write_markdown(out, "Static distillation: a model2vec-style static embedder from any embedlab model", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", action="append", help="repeatable; default minilm-l6")
    parser.add_argument("--stage", choices=["all", "distill", "eval", "speed", "report"], default="all")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    parser.add_argument("--only", default=None, help="eval stage: only these models (teacher,zipf,sif,plain,peer_model2vec)")
    parser.add_argument("--no-peer", action="store_true", help="skip model2vec's own distillation")
    parser.add_argument("--bf16-texts", type=int, default=512, help="texts for the (slow, emulated) bf16 teacher timing")
    parser.add_argument("--report-teachers", default=None, help="teachers shown in the report (default: every one with results)")
    parser.add_argument("--out", default=str(REPO / "docs" / "static.md"))
    args = parser.parse_args()
    teachers = args.teacher or ["minilm-l6"]
    tasks = [t for t in args.tasks.split(",") if t]
    for name in teachers:
        if args.stage in ("all", "distill"):
            stage_distill(name, peer=not args.no_peer and name == "minilm-l6")
        if args.stage in ("all", "eval"):
            stage_eval(name, tasks, args.only.split(",") if args.only else None)
        if args.stage in ("all", "speed"):
            stage_speed(name, args.bf16_texts)
    if args.stage in ("all", "report"):
        shown = args.report_teachers.split(",") if args.report_teachers else [
            t for t in TEACHERS if (tdir(t) / "results" / "teacher").is_dir()]
        stage_report(shown, tasks, Path(args.out))


if __name__ == "__main__":
    main()
