"""Static distillation: teacher vs its static students (embedlab distill) vs model2vec's own distillation.

For each teacher, in stages that each stay under ~10 minutes on a 2-core CPU and resume from
``runs/static_distill/<teacher>/`` (gitignored):

* ``distill``: the token vectors (each vocabulary token alone through the teacher's chain, cached as
  ``token_vectors.npy``), then the students: ``zipf`` (PCA 256 + Zipf weights, embedlab's default),
  ``sif`` (PCA 256 + SIF weights from real token frequencies of a corpus of *train* splits of the shared
  data, no test text), ``plain`` (no PCA, no weights: the ablation), and for minilm-l6 the peer: model2vec
  0.10.0's own ``distill(pca_dims=256)`` run in its own venv (``bench/_model2vec_peer.py``).
* ``eval``: the teacher's tasks (``TEACHER_TASKS``, or ``--tasks``) for the teacher (embedding cache on) and
  each student, with the same per-task truncation for both (``TASK_MAX_LENGTH``); one JSON per task as
  ``embedlab eval`` writes it.
* ``speed``: sentences/s on the same texts (the unique STS-B test sentences) for the teacher (fp32 and bf16)
  and the student (embedlab's numpy encode, and model2vec's ``StaticModel.encode`` on the same folder),
  one process, median of repeats.
* ``report``: docs/static.md and docs/static.png from what the stages left.
* ``prefix-space`` (issue 22.15; byte-level BPE teachers): the Zipf PCA-256 student built twice from ONE token
  pass, with the teacher tokenizer's own prefix-space setting and with the prefix space model2vec 0.10 adds
  (``distill(prefix_space=...)``: only the student's tokenizer changes, not the token vectors), then both
  students (not the teacher) on the teacher's tasks with the same per-task cut; it rewrites only its own
  marked section of docs/static.md (and the ``report`` stage renders the same section from the same results).

    python bench/static_distill.py --teacher minilm-l6 --stage all
    python bench/static_distill.py --teacher smollm2-135m --stage distill   # then eval, speed; resumable
    python bench/static_distill.py --stage report                            # docs/static.md for both teachers
    python bench/static_distill.py --teacher smollm2-135m --stage prefix-space   # its own section of docs/static.md

The smollm2-135m teacher is the grid's best design, Model 5 (``multi_layer/bidirectional``: the multi-layer
trainable pooling head and the shared projection trained by ``make demo`` = ``embedlab grid --preset
cpu-small``), read from ``runs/demo-grid/models/multi_layer-bidirectional`` (or ``--grid-head DIR``) and
copied with its provenance to ``runs/static_distill/smollm2-135m/teacher_head/``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import REPO, machine_facts, write_markdown  # noqa: E402

RUNS = REPO / "runs" / "static_distill"
DATA = REPO.parent / "shared" / "data"
STS = ["STSBenchmark", "SICK-R", "STS12", "STS14", "STS15"]
CLASSIFICATION = [
    "Banking77Classification",
    "AmazonCounterfactualClassification",
    "TweetSentimentExtractionClassification",
    "MR",
    "CR",
    "SST2",
]
RETRIEVAL = ["SciFact"]
DEFAULT_TASKS = STS + CLASSIFICATION + RETRIEVAL
TEACHERS = {  # name -> what the teacher is (the report's words)
    "minilm-l6": "The packaged sentence-transformers encoder (all-MiniLM-L6-v2) with its own mean pooling",
    "smollm2-135m": "SmolLM2-135M with the grid's best head: Model 5 (`multi_layer/bidirectional`, the multi-layer "
    "trainable pooling head + the shared linear projection, as `make demo` trained them)",
}
# SST2's classifier trains on the full 67,349-sentence train split: ~0.9 M SmolLM2 tokens, ~55 min of that teacher here
TEACHER_TASKS = {"minilm-l6": DEFAULT_TASKS, "smollm2-135m": [t for t in DEFAULT_TASKS if t != "SST2"]}
LEFT_OUT_WHY = {
    "SST2": "its classifier trains on the full train split, 67,349 sentences (~0.9 M SmolLM2 tokens), about 55 "
    "minutes of this teacher's fp32 forward on the 2-core CPU"
}
# per-task max_length (tokens) for teacher and students alike; SciFact documents average ~300 SmolLM2 tokens
TASK_MAX_LENGTH: dict[str, dict[str, int]] = {"smollm2-135m": {"SciFact": 16}}
APPENDS_EOS = {"smollm2-135m"}  # teachers whose chain appends EOS (SmolLM2's tokenizer adds no BOS)
# texts of the speed stage's fp32 teacher run (None: all 2,552) and of its emulated-bf16 run
SPEED_TEXTS: dict[str, int | None] = {"smollm2-135m": 512}
BF16_TEXTS = {"minilm-l6": 512, "smollm2-135m": 64}
GRID_HEAD = REPO / "runs" / "demo-grid" / "models" / "multi_layer-bidirectional"  # make demo's Model 5
TOKEN_PART = 4096  # tokens per resumable part of the token pass
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


def tdir(name: str) -> Path:
    return RUNS / name


def head_dir() -> Path:
    return tdir("smollm2-135m") / "teacher_head"


def fetch_grid_head(src: Path) -> Path:
    """Copy the grid's trained Model 5 head and projection (with where they came from) into this bench's
    folder, once; later stages read the copy."""
    import shutil

    from embedlab.io import atomic_path, file_sha256

    dst = head_dir()
    if (dst / "head.json").is_file():
        return dst
    grid_root = src.parent.parent
    if not (src / "1_Pooling").is_dir() or not (grid_root / "designs.json").is_file():
        raise SystemExit(
            f"no trained Model 5 head in {src}: run `make demo` (embedlab grid --preset cpu-small --output "
            "runs/demo-grid), or a grid YAML with `preset: cpu-small` and `only: [last_token/causal, "
            "multi_layer/bidirectional]`, then pass its models/multi_layer-bidirectional as --grid-head"
        )
    grid = json.loads((grid_root / "grid_config.json").read_text())
    design = json.loads((grid_root / "designs.json").read_text())["multi_layer/bidirectional"]
    if grid["model"] != "smollm2-135m" or design["pooling"] != "multi_layer" or design["attention"] != "bidirectional":
        raise SystemExit(f"{src} is not a SmolLM2-135M multi_layer/bidirectional design")
    with atomic_path(dst) as tmp:
        tmp.mkdir(parents=True)
        for part in ("1_Pooling", "2_Dense"):
            shutil.copytree(src / part, tmp / part)
        info = {
            "from": str(src),
            "grid": {k: grid[k] for k in ("preset", "model", "mode", "head_preset", "padding_side", "train")},
            "design": design,
            "grid_scores": {
                d.name: {
                    r.stem: r_json["main_score"]
                    for r in sorted(d.glob("*.json"))
                    for r_json in [json.loads(r.read_text())]
                }
                for d in sorted((grid_root / "results").iterdir())
                if d.is_dir()
            },
            "sha256": {
                f"{p}/model.safetensors": file_sha256(src / p / "model.safetensors") for p in ("1_Pooling", "2_Dense")
            },
        }
        (tmp / "head.json").write_text(json.dumps(info, indent=2) + "\n")
    return dst


def load_teacher(name: str):  # noqa: ANN201
    """minilm-l6 as packaged; smollm2-135m as the grid's frozen-mode chain: bidirectional backbone with EOS
    appended and right padding -> multi-layer head -> projection -> L2 normalisation."""
    import embedlab

    if name != "smollm2-135m":
        return embedlab.load(name)
    from embedlab.models import Embedder, Normalize
    from embedlab.models.backbone import Backbone
    from embedlab.models.modules import Projection
    from embedlab.models.pooling import PoolingHead

    root = head_dir()
    info = json.loads((root / "head.json").read_text())
    backbone = Backbone.from_name(info["grid"]["model"], attention="bidirectional")
    backbone = backbone.with_options(padding_side=info["grid"]["padding_side"], append_eos=backbone.is_decoder)
    return Embedder([backbone, PoolingHead.load(root / "1_Pooling"), Projection.load(root / "2_Dense"), Normalize()])


def cached_token_vectors(name: str, teacher, timing: dict) -> np.ndarray:  # noqa: ANN001
    """The token pass in resumable parts of TOKEN_PART tokens (a killed run loses one part at most)."""
    from embedlab.models.static import backend_tokenizer, token_vectors, vocabulary_size

    root = tdir(name)
    cache = root / "token_vectors.npy"
    if cache.is_file():
        return np.load(cache)
    n = vocabulary_size(backend_tokenizer(teacher.tokenizer))
    parts = root / "token_parts"
    parts.mkdir(exist_ok=True)
    seconds = timing.setdefault("token_parts_s", {})
    for lo in range(0, n, TOKEN_PART):
        part = parts / f"{lo:06d}.npy"
        if part.is_file():
            continue
        start = time.perf_counter()
        vecs = token_vectors(teacher, rows=np.arange(lo, min(lo + TOKEN_PART, n)))
        seconds[str(lo)] = round(time.perf_counter() - start, 1)
        np.save(part.with_suffix(".tmp.npy"), vecs)
        part.with_suffix(".tmp.npy").rename(part)
        (root / "distill_timing.json").write_text(json.dumps(timing, indent=2) + "\n")
        print(f"{name}: tokens {lo}..{min(lo + TOKEN_PART, n) - 1} in {seconds[str(lo)]} s", flush=True)
    vectors = np.concatenate([np.load(parts / f"{lo:06d}.npy") for lo in range(0, n, TOKEN_PART)])
    timing["token_vectors_s"] = round(sum(seconds.values()), 1)
    np.save(cache, vectors)
    return vectors


# -- stages -------------------------------------------------------------------------------------
def stage_distill(name: str, peer: bool, grid_head: Path) -> None:
    from embedlab.models.static import distill, token_vectors

    root = tdir(name)
    root.mkdir(parents=True, exist_ok=True)
    if name == "smollm2-135m":
        fetch_grid_head(grid_head)
    teacher = load_teacher(name)
    cache = root / "token_vectors.npy"
    timing_file = root / "distill_timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    if cache.is_file():
        vectors = np.load(cache)
    elif name == "minilm-l6":  # measured in one pass (20.8 s); its cache is kept
        start = time.perf_counter()
        vectors = token_vectors(teacher, show_progress=True)
        timing["token_vectors_s"] = round(time.perf_counter() - start, 1)
        np.save(cache, vectors)
    else:
        vectors = cached_token_vectors(name, teacher, timing)
    corpus = sif_corpus()
    # a of the SIF weights, chosen on STS-B *dev* (Zipf keeps model2vec's default a = 1e-4; its dev scores
    # for the same grid are reported too)
    sweep = {}
    for weighting in ("sif", "zipf"):
        for a in SIF_GRID:
            model, _ = distill(
                teacher,
                vectors=vectors,
                dims=256,
                weighting=weighting,
                sif_coefficient=a,
                corpus=corpus if weighting == "sif" else None,
            )
            sweep.setdefault(weighting, {})[str(a)] = round(100 * stsb_dev(model), 2)
    best_a = float(max(sweep["sif"], key=lambda k: sweep["sif"][k]))
    timing["a_sweep_stsb_dev"] = sweep
    timing["sif_a"] = best_a
    print(f"{name}: STS-B dev by a: {sweep}; SIF uses a = {best_a:g}")
    for student, kwargs in (
        ("zipf", {"dims": 256}),
        ("sif", {"dims": 256, "corpus": corpus, "sif_coefficient": best_a}),
        ("plain", {"dims": None, "weighting": "none"}),
    ):
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
    limits = TASK_MAX_LENGTH.get(name, {})
    for model_name, path in models_of(name).items():
        if only and model_name not in only:
            continue
        out = tdir(name) / "results" / model_name
        todo = [t for t in tasks if not result_path(out, available[t]).is_file()]
        if not todo:
            continue
        emb = load_teacher(name) if path is None else embedlab.load(str(path))
        for task_name in todo:
            task = available[task_name]
            limit = limits.get(task_name)
            if limit is not None and path is not None and name in APPENDS_EOS:
                limit -= 1  # the teacher's limit counts the EOS it appends: the same content tokens for the student
            model = emb if limit is None else emb.with_options(max_length=limit)
            start = time.perf_counter()
            r = run_task(
                task,
                model,
                out,
                cache=EmbeddingCache() if path is None else None,
                extra_metadata={"max_length": model.max_length} if task_name in limits else None,
            )
            print(
                f"{name}/{model_name}/{task_name}: {100 * r['main_score']:.2f} ({time.perf_counter() - start:.1f} s)",
                flush=True,
            )


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
    from model2vec import StaticModel

    import embedlab

    texts = speed_texts()[: SPEED_TEXTS.get(name)]
    teacher = load_teacher(name)
    student = embedlab.load(str(tdir(name) / "zipf"))
    m2v = StaticModel.from_pretrained(str(tdir(name) / "zipf"))
    teacher.encode(texts[:64])
    student.encode(texts[:64])
    m2v.encode(texts[:64])
    result = {
        "texts": len(texts),
        "tokens_per_text": round(float(np.mean([len(x) for x in teacher.tokenize(texts).ids])), 1),
    }
    rate, runs = _rate(lambda: teacher.encode(texts, dtype="fp32"), len(texts), 3 if len(texts) > 1000 else 1)
    result["teacher_fp32"] = {"rate": rate, "runs": runs}
    sub = texts[:bf16_texts]
    teacher.encode(sub[:8], dtype="bf16")  # the bf16 weights/casts once, outside the timing
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


# -- prefix space (issue 22.15) -------------------------------------------------------------------
PREFIX_MODELS = {  # folder -> distill(prefix_space=...)
    "no_prefix_space": False,
    "prefix_space": True,
}
PREFIX_BEGIN = "<!-- BEGIN {key}: generated by `python bench/static_distill.py --stage prefix-space`, do not edit -->"
PREFIX_END = "<!-- END {key} -->"


def prefix_root(name: str) -> Path:
    return tdir(name) / "prefix_space"


def stage_prefix_space(name: str, tasks: list[str], grid_head: Path, out: Path) -> None:
    """Both students from one token pass (the cached one when there is one), both evaluated, the section written."""
    import embedlab
    from embedlab.eval.registry import builtin_tasks
    from embedlab.eval.runner import result_path, run_task
    from embedlab.models.static import adds_prefix_space, backend_tokenizer, distill

    root = prefix_root(name)
    root.mkdir(parents=True, exist_ok=True)
    if name == "smollm2-135m":
        fetch_grid_head(grid_head)
    timing_file = root / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    if not all((root / m / "embedlab_static.json").is_file() for m in PREFIX_MODELS):
        teacher = load_teacher(name)
        own = adds_prefix_space(backend_tokenizer(teacher.tokenizer))
        if own is None:
            raise SystemExit(f"{name}'s tokenizer has no byte-level pre-tokenizer: no prefix space to compare")
        distill_timing = tdir(name) / "distill_timing.json"
        token_timing = json.loads(distill_timing.read_text()) if distill_timing.is_file() else {}
        vectors = cached_token_vectors(name, teacher, token_timing)  # one pass (or its cache) for both students
        distill_timing.write_text(json.dumps(token_timing, indent=2) + "\n")
        timing["token_vectors_s"] = token_timing.get("token_vectors_s")
        for folder, value in PREFIX_MODELS.items():
            model, provenance = distill(teacher, vectors=vectors, dims=256, prefix_space=value)
            provenance["teacher_name"] = name
            model.save(root / folder, provenance=provenance)
            timing[f"distill_{folder}_s"] = provenance["seconds"]
            print(f"{name}: {folder} student saved (prefix_space {value}, teacher's {own})", flush=True)
        timing_file.write_text(json.dumps(timing, indent=2) + "\n")
    available = builtin_tasks()
    limits = TASK_MAX_LENGTH.get(name, {})
    for folder in PREFIX_MODELS:
        results = root / "results" / folder
        emb = embedlab.load(str(root / folder))
        for task_name in tasks:
            task = available[task_name]
            if result_path(results, task).is_file():
                continue
            limit = limits.get(task_name)
            if limit is not None and name in APPENDS_EOS:
                limit -= 1  # the same content tokens as the main table's students (the teacher's limit counts EOS)
            model = emb if limit is None else emb.with_options(max_length=limit)
            start = time.perf_counter()
            r = run_task(
                task,
                model,
                results,
                extra_metadata={"max_length": model.max_length} if task_name in limits else None,
            )
            seconds = round(time.perf_counter() - start, 1)
            timing.setdefault("eval_s", {}).setdefault(folder, {})[task_name] = seconds
            timing_file.write_text(json.dumps(timing, indent=2) + "\n")
            print(f"{name}/{folder}/{task_name}: {100 * r['main_score']:.2f} ({seconds} s)", flush=True)
    write_prefix_sections(out, name, tasks)


def _prefix_scores(name: str, tasks: list[str]) -> tuple[dict[str, dict[str, dict]], list[str]]:
    res = prefix_root(name) / "results"
    scores = {
        m: {p.stem: json.loads(p.read_text()) for p in (res / m).glob("*.json")} if (res / m).is_dir() else {}
        for m in PREFIX_MODELS
    }
    return scores, [t for t in tasks if all(t in scores[m] for m in PREFIX_MODELS)]


@functools.cache
def _prefix_stats(name: str, tasks: tuple[str, ...]) -> dict:
    """Per-task paired bootstrap (items) and the hierarchical bootstrap of the mean (datasets, then items) of
    Δ = prefix space − none; 1000 resamples, seed 0."""
    from embedlab.eval.significance import hierarchical_bootstrap, paired_bootstrap

    scores, done = _prefix_scores(name, list(tasks))
    no, yes = "no_prefix_space", "prefix_space"
    pairs = [(scores[no][t]["per_example"], scores[yes][t]["per_example"]) for t in done]
    return {
        "scores": scores,
        "done": done,
        "per_task": {t: paired_bootstrap(a, b, resamples=1000, seed=0) for t, (a, b) in zip(done, pairs)},
        "mean": hierarchical_bootstrap(pairs, resamples=1000, seed=0) if done else None,
    }


def prefix_section(name: str, tasks: list[str]) -> list[str]:
    """The measured section: per-task scores both ways, Δ with its paired-bootstrap CI, the mean with the
    hierarchical bootstrap; [] when there are no results."""
    stats = _prefix_stats(name, tuple(tasks))
    scores, done = stats["scores"], stats["done"]
    if not done:
        return []
    root = prefix_root(name)
    timing = json.loads((root / "timing.json").read_text()) if (root / "timing.json").is_file() else {}
    prov = {m: json.loads((root / m / "embedlab_static.json").read_text()) for m in PREFIX_MODELS}
    own = prov["no_prefix_space"]["teacher_prefix_space"]
    no, yes = "no_prefix_space", "prefix_space"
    label = {
        no: "no prefix space" + (" (the teacher's setting, embedlab's default)" if own is False else ""),
        yes: "prefix space (model2vec 0.10)" + (" (the teacher's setting, embedlab's default)" if own else ""),
    }
    limits = TASK_MAX_LENGTH.get(name, {})
    evals = timing.get("eval_s", {})
    facts = machine_facts()
    lines = [
        f"## Prefix space or not: `{name}`'s Zipf student (issue 22.15)",
        "",
        f"`python bench/static_distill.py --teacher {name} --stage prefix-space` — one token pass over the "
        f"{prov[no]['vocabulary']:,}-token vocabulary through this teacher (the chain described above, "
        f"{timing.get('token_vectors_s', '?')} s), then the PCA-256 Zipf student twice from the same vectors: "
        "`distill(prefix_space=False)` and `distill(prefix_space=True)` (`--no-prefix-space` / `--prefix-space`). "
        "The two tables are identical; only the student's byte-level pre-tokenizer differs: with the prefix "
        "space a text's first word is cut into word-start pieces (`Ġword`) like every other word, without it "
        "as if it continued a word. Only the two students are evaluated (not the teacher), on the teacher's "
        "tasks"
        + (f", cut to {', '.join(f'{v - 1} content tokens on {k}' for k, v in limits.items())}" if limits else "")
        + f" as in the table above; their evaluation took {sum(evals.get(no, {}).values()):.0f} s and "
        f"{sum(evals.get(yes, {}).values()):.0f} s.",
        "",
        f"- written: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}; "
        + "; ".join(f"{k}: {facts[k]}" for k in ("CPU", "cores", "torch threads", "versions", "commit") if k in facts),
        "",
        f"| task | {label[no]} | {label[yes]} | Δ (prefix − none) | 95% CI (paired bootstrap) |",
        "|---|---|---|---|---|",
    ]
    for t in done:
        a, b, ci = scores[no][t], scores[yes][t], stats["per_task"][t]
        lines.append(
            f"| {t} | {100 * a['main_score']:.2f} | {100 * b['main_score']:.2f} | "
            f"{100 * (b['main_score'] - a['main_score']):+.2f} | [{100 * ci.ci_low:+.2f}, {100 * ci.ci_high:+.2f}] |"
        )
    mean = {m: 100 * float(np.mean([scores[m][t]["main_score"] for t in done])) for m in PREFIX_MODELS}
    hier = stats["mean"]
    lines += [
        f"| **mean, {len(done)} tasks** | **{mean[no]:.2f}** | **{mean[yes]:.2f}** | **{mean[yes] - mean[no]:+.2f}** | "
        f"[{100 * hier.ci_low:+.2f}, {100 * hier.ci_high:+.2f}] (hierarchical) |",
        "",
        "Scores ×100 (each task's main metric); CIs: 1000 resamples, seed 0 (per task: items; the mean: datasets, "
        "then items). " + prefix_conclusion(name, tasks),
        "",
        *_prefix_teacher_note(name, tasks, scores[no]),
    ]
    missing = [t for t in tasks if t not in done]
    if missing:
        lines += [f"Not yet evaluated both ways: {', '.join(missing)}.", ""]
    return lines


def prefix_conclusion(name: str, tasks: list[str]) -> str:
    """One sentence from the results: the mean Δ, its CI, the tasks it moves, and what embedlab's default is."""
    stats = _prefix_stats(name, tuple(tasks))
    done, hier = stats["done"], stats["mean"]
    if not done:
        return ""
    up = sum(stats["per_task"][t].ci_low > 0 for t in done)
    down = sum(stats["per_task"][t].ci_high < 0 for t in done)
    clear = hier.ci_low > 0 or hier.ci_high < 0
    return (
        f"On `{name}` the prefix space changes the mean over {len(done)} tasks by {100 * hier.delta:+.2f} points "
        f"(95% CI [{100 * hier.ci_low:+.2f}, {100 * hier.ci_high:+.2f}]"
        + ("" if clear else ", which includes 0")
        + f"; per task it is significantly up on {up} and down on {down} of {len(done)}), "
        + ("a clear difference" if clear else "no clear difference either way")
        + ", so embedlab keeps the teacher's setting by default (`prefix_space=None`)."
    )


def _prefix_teacher_note(name: str, tasks: list[str], kept: dict[str, dict]) -> list[str]:
    """Which teacher head the token pass went through, and how the no-prefix student compares with the
    main table's Zipf student (the same recipe) when that one's results are on disk."""
    if name != "smollm2-135m" or not (head_dir() / "head.json").is_file():
        return []
    info = json.loads((head_dir() / "head.json").read_text())
    design = info["design"]
    main = load_scores(name).get("zipf", {})
    both = [t for t in tasks if t in main and t in kept]
    if both:
        gap = max(abs(main[t]["main_score"] - kept[t]["main_score"]) for t in both)
        agree = (
            f"the no-prefix student differs from the Zipf column above by at most {100 * gap:.2f} points on "
            f"{len(both)} tasks."
        )
    else:
        agree = (
            "the Zipf column above was distilled from the head of an earlier `make demo` run, so the no-prefix "
            "column here, the same recipe on this head, need not equal it to the last digit."
        )
    return [
        f"The teacher's head: `{info['from']}` (trained {design['steps']} steps by `embedlab grid` with the "
        f"`{info['grid']['preset']}` preset, final loss {design['final_loss']:.3f}); " + agree,
        "",
    ]


def _marked(key: str, lines: list[str]) -> list[str]:
    return [PREFIX_BEGIN.format(key=key), *lines, PREFIX_END.format(key=key)]


def prefix_summary(name: str, tasks: list[str]) -> list[str]:
    """The "How it works" paragraph on the prefix space: a pointer to the measured section and its conclusion."""
    conclusion = prefix_conclusion(name, tasks)
    if not conclusion:
        return [UNMEASURED]
    return [
        "One difference from model2vec is an option: for a byte-level BPE teacher model2vec (0.10) sets the "
        "student's pre-tokenizer to add a prefix space, so a text's first word is cut into word-start pieces "
        "(`Ġword`) like every other word; embedlab keeps the teacher tokenizer's own setting unless "
        "`--prefix-space`/`--no-prefix-space` (`distill(prefix_space=...)`) says otherwise (SmolLM2 adds no prefix "
        f"space). Measured in [Prefix space or not](#prefix-space-or-not-{name.replace('.', '')}s-zipf-student-issue-2215) "
        "(issue 22.15): " + conclusion[0].lower() + conclusion[1:]
    ]


UNMEASURED = (
    "One difference from model2vec is left unmeasured: for a byte-level BPE teacher model2vec (0.10) sets the "
    "student's pre-tokenizer to add a prefix space, so a text's first word is cut into word-start pieces "
    "(`Ġword`) like every other word; embedlab keeps the teacher tokenizer's own setting (SmolLM2 adds no prefix "
    "space, so a text's first word is cut as if it continued a word). Its effect on smollm2-135m's student was "
    "not measured (issue 22.15; two passes over the 49,152-token vocabulary did not fit this session's shared "
    "CPU)."
)


def replace_marked(text: str, key: str, lines: list[str], *, before: str | None = None, old: str | None = None) -> str:
    """``text`` with its marked ``key`` block replaced by ``lines`` (marked); without the block, the block
    replaces the paragraph ``old`` or goes before the line ``before``."""
    begin, end = PREFIX_BEGIN.format(key=key), PREFIX_END.format(key=key)
    block = "\n".join(_marked(key, lines))
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    if old is not None and old in text:
        return text.replace(old, block)
    if before is not None and f"\n{before}\n" in text:
        return text.replace(f"\n{before}\n", f"\n{block}\n\n{before}\n", 1)
    raise SystemExit(f"{key}: no marked block, and neither its old paragraph nor {before!r} in the page")


def write_prefix_sections(out: Path, name: str, tasks: list[str]) -> None:
    """Rewrite only this stage's two marked blocks of ``out`` (the rest of the page is the report stage's)."""
    from embedlab.io import atomic_path

    text = out.read_text(encoding="utf-8")
    section = [line.replace(f"{REPO}/", "") for line in prefix_section(name, tasks)]
    text = replace_marked(text, "prefix-space", section, before="## Use")
    text = replace_marked(text, "prefix-space-summary", prefix_summary(name, tasks), old=UNMEASURED)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {out} (its prefix-space sections)")


# -- report -------------------------------------------------------------------------------------
def load_scores(name: str) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    root = tdir(name) / "results"
    if not root.is_dir():
        return out
    for model_dir in sorted(root.iterdir()):
        out[model_dir.name] = {p.stem: json.loads(p.read_text()) for p in model_dir.glob("*.json")}
    return out


LABELS = {
    "teacher": "teacher",
    "zipf": "embedlab static (PCA 256, Zipf)",
    "sif": "embedlab static (PCA 256, SIF corpus)",
    "plain": "embedlab static (no PCA, no weights)",
    "peer_model2vec": "model2vec 0.10.0 distill (PCA 256, Zipf)",
}


SHORT = {"zipf": "Zipf", "sif": "SIF", "plain": "no PCA, no weights", "peer_model2vec": "model2vec"}


def pair_agreement(a_dir: Path, b_dir: Path) -> dict[str, float]:
    """How alike two static models are on the STS-B test pairs: Spearman between their pair cosines,
    and the mean |difference| of the cosines (PCA axes may differ in sign, so vectors are not compared)."""
    from scipy.stats import spearmanr

    import embedlab

    left = read_tsv_columns(DATA / "stsbenchmark" / "test.tsv", ("sentence1",))
    right = read_tsv_columns(DATA / "stsbenchmark" / "test.tsv", ("sentence2",))
    cos = []
    for d in (a_dir, b_dir):
        m = embedlab.load(str(d), normalize=True)
        x, y = m.encode(left), m.encode(right)
        cos.append((x * y).sum(axis=1))
    return {
        "spearman": float(spearmanr(cos[0], cos[1]).statistic),
        "mean_abs_diff": float(np.abs(cos[0] - cos[1]).mean()),
    }


def _demote(markdown: str) -> list[str]:
    """An embedded report's headings, moved below this page's ### level."""
    return [("#### " + line.lstrip("#").strip()) if line.startswith("#") else line for line in markdown.splitlines()]


def head_choice(name: str) -> list[str]:
    """Why the SmolLM2 teacher has the head it has: the grid's own scores (make demo), from head.json."""
    if name != "smollm2-135m" or not (head_dir() / "head.json").is_file():
        return []
    info = json.loads((head_dir() / "head.json").read_text())
    grid, design, scores = info["grid"], info["design"], info.get("grid_scores", {})
    train = grid["train"]
    rows = []
    for d in sorted(scores, key=lambda k: -scores[k].get("STSBenchmark", 0)):
        rows.append(
            f"| `{d.replace('-', '/', 1)}` | "
            + " | ".join(f"{100 * scores[d][t]:.2f}" if t in scores[d] else "–" for t in ("STSBenchmark", "TrecQA"))
            + " |"
        )
    return [
        "**Which head, and why.** The grid (docs/grid.md, `make demo` = `embedlab grid --preset cpu-small`, frozen "
        "mode) found only Model 5, `multi_layer/bidirectional` (the paper's multi-layer trainable pooling over each "
        "layer's masked mean, bidirectional attention), better than the EOS/causal baseline on both of its tasks with "
        "CIs excluding 0; the parameter-free heads (`mean`, `last_token`) are tied with the baseline or worse. The "
        "trained head is on disk, so the teacher is that exact chain: SmolLM2-135M (bidirectional, EOS appended, "
        f"right padding) → the trained multi-layer head ({design['head_parameters']:,} parameters) → the trained "
        f"linear projection ({design['projection_parameters']:,}) → L2 normalisation, {design['steps']} steps × "
        f"{train['batch_size']} queries at lr {train['lr']:g} on "
        + ", ".join(f"{d['max_examples']} {d['source']}" for d in train["data"])
        + f" (final loss {design['final_loss']:.3f}). The grid's own scores for its designs (its evaluation: E5 "
        f"instructions on the query side, max length {train['max_length']}; ×100):",
        "",
        "| grid design | STSBenchmark | TrecQA |",
        "|---|---|---|",
        *rows,
        "",
        "Here every vocabulary token goes through that chain (the head pools the 30 layers' means over the token "
        "and its EOS); the teacher is evaluated without instructions, like its students, which have no prompt.",
        "",
    ]


def summary_table(teachers: list[str], tasks: list[str] | None) -> list[str]:
    """One row per teacher: its tasks, the average of each model and the Zipf student's speed-up."""
    lines = [
        "| teacher | tasks | teacher avg | static Zipf avg (% of teacher) | static SIF avg (% of teacher) | "
        "student sentences/s | × teacher fp32 | × teacher bf16 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in teachers:
        scores = load_scores(name)
        if "teacher" not in scores:
            continue
        wanted = tasks or TEACHER_TASKS.get(name, DEFAULT_TASKS)
        models = [m for m in ("teacher", "zipf", "sif") if m in scores]
        done = [t for t in wanted if all(t in scores[m] for m in models)]
        avg = {m: 100 * float(np.mean([scores[m][t]["main_score"] for t in done])) for m in models}
        cells = [f"{avg[m]:.2f} ({100 * avg[m] / avg['teacher']:.1f}%)" if m in avg else "–" for m in ("zipf", "sif")]
        speed_file = tdir(name) / "speed.json"
        if speed_file.is_file():
            sp = json.loads(speed_file.read_text())
            rate = sp["student_embedlab"]["rate"]
            cells += [
                f"{rate:,.0f}",
                f"{rate / sp['teacher_fp32']['rate']:,.0f}×",
                f"{rate / sp['teacher_bf16']['rate']:,.0f}×",
            ]
        else:
            cells += ["–", "–", "–"]
        lines.append(f"| `{name}` | {len(done)} | {avg['teacher']:.2f} | " + " | ".join(cells) + " |")
    return lines + ["", "Details, CIs and the peer comparison per teacher below.", ""]


def teacher_section(name: str, tasks: list[str] | None, png_rows: list) -> list[str]:
    from embedlab.eval.report import compare, to_markdown

    tasks = tasks or TEACHER_TASKS.get(name, DEFAULT_TASKS)
    scores = load_scores(name)
    if "teacher" not in scores:
        return [f"## {name}", "", "No results yet (run the eval stage).", ""]
    models = [m for m in ("teacher", "zipf", "sif", "plain", "peer_model2vec") if m in scores]
    done = [t for t in tasks if all(t in scores[m] for m in models)]
    lines = [f"## Teacher `{name}`", "", f"{TEACHERS.get(name, name)}.", "", *head_choice(name)]
    limits = TASK_MAX_LENGTH.get(name, {})
    lines += [
        f"Tasks: {', '.join(tasks)}"
        + (
            f"; cut to {', '.join(f'{v} tokens on {k}' for k, v in limits.items())} for "
            "the teacher and its students alike"
            if limits
            else ""
        )
        + ".",
        "",
    ]
    left_out = [t for t in DEFAULT_TASKS if t not in tasks]
    if left_out:
        seconds = sum(
            scores.get("teacher", {}).get(t, {}).get("metadata", {}).get("evaluation_time_s", 0) for t in tasks
        )
        lines += [
            f"**A subset, not every task.** Teacher and students are scored on the same subset (the teacher's "
            f"evaluation took {seconds / 60:.1f} min); not run for this teacher: "
            + "; ".join(f"{t} ({LEFT_OUT_WHY[t]})" if t in LEFT_OUT_WHY else t for t in left_out)
            + ".",
            "",
        ]
    if "SciFact" in limits:
        lines += [
            f"**SciFact cut short.** This teacher's fp32 forward is the cost (SmolLM2-135M: 270–450 tokens/s on a "
            "2-core AVX2 CPU); SciFact's 5,183 documents (~300 tokens each, ~1.6 M tokens) would take over 90 minutes. "
            f"Its texts are cut for teacher and students alike, to {limits['SciFact'] - 1} content tokens (the "
            f"teacher's limit of {limits['SciFact']} includes the EOS it appends); the student tokenizes as model2vec "
            "does, cutting a text to max_length × the vocabulary's median token length characters first, so some "
            f"documents keep fewer than {limits['SciFact'] - 1} tokens. Its absolute nDCG is far below the full "
            "task's, for teacher and students alike.",
            "",
        ]
    timing_file = tdir(name) / "distill_timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    prov = json.loads((tdir(name) / "zipf" / "embedlab_static.json").read_text())
    sif_prov = json.loads((tdir(name) / "sif" / "embedlab_static.json").read_text())
    sweep = timing.get("a_sweep_stsb_dev", {})
    lines += [
        f"- vocabulary: {prov['vocabulary']:,} tokens, {prov.get('emittable_tokens', prov['vocabulary']):,} of which a text "
        f"can produce (ranked for Zipf; the PCA is fitted on them); PCA 256 keeps {100 * prov['explained_variance']:.1f}% "
        f"of their variance",
        f"- a in a/(a + p): Zipf keeps model2vec's {prov['sif_coefficient']:g}; SIF uses {sif_prov['sif_coefficient']:g}, "
        "the best on STS-B *dev* (Spearman ×100 by a: "
        + "; ".join(f"{w}: " + ", ".join(f"{float(a):g} → {v}" for a, v in d.items()) for w, d in sweep.items())
        + ")"
        + (
            "; that is the grid's smallest a, so a smaller one was not tried"
            if sweep.get("sif") and sif_prov["sif_coefficient"] == min(float(a) for a in sweep["sif"])
            else ""
        ),
        f"- embedlab's token pass (every token through the teacher): {timing.get('token_vectors_s', '?')} s"
        + (
            f"; model2vec's whole distillation: {timing['peer']['seconds']} s (model2vec {timing['peer']['model2vec']}, "
            f"transformers {timing['peer']['transformers']} in its own venv)"
            if "peer" in timing
            else ""
        ),
        f"- SIF corpus: {sif_prov['corpus']['texts']:,} texts, {sif_prov['corpus']['tokens']:,} tokens, "
        f"{sif_prov['corpus']['tokens_seen']:,} distinct tokens seen (train splits: "
        + ", ".join(f"`{f}`" for f in sif_prov["corpus"].get("files", []))
        + ")",
        "",
    ]
    header = "| task | " + " | ".join(LABELS[m] for m in models) + " |"
    lines += [header, "|---" * (len(models) + 1) + "|"]
    avg = {}
    for t in done:
        lines.append(f"| {t} | " + " | ".join(f"{100 * scores[m][t]['main_score']:.2f}" for m in models) + " |")
    for label, group in (
        ("STS average", STS),
        ("classification average", CLASSIFICATION),
        ("retrieval (SciFact)", RETRIEVAL),
        ("**average, all tasks**", done),
    ):
        group = [t for t in group if t in done]
        if not group:
            continue
        vals = {m: 100 * float(np.mean([scores[m][t]["main_score"] for t in group])) for m in models}
        avg[label] = vals
        lines.append(f"| {label} | " + " | ".join(f"{vals[m]:.2f}" for m in models) + " |")
    overall = avg.get("**average, all tasks**", {})
    if overall:
        lines.append(
            "| **% of the teacher's average** | "
            + " | ".join(f"{100 * overall[m] / overall['teacher']:.1f}%" for m in models)
            + " |"
        )
    lines.append("")
    above = [
        f"{t} ({', '.join(SHORT[m] for m in models[1:] if scores[m][t]['main_score'] > scores['teacher'][t]['main_score'])})"
        for t in done
        if any(scores[m][t]["main_score"] > scores["teacher"][t]["main_score"] for m in models[1:])
    ]
    if above:
        lines += [
            f"A student scores above its teacher on {len(above)} of {len(done)} tasks: {'; '.join(above)}."
            + (
                " A reading, not a measurement: this teacher is weak (its head is a 40-step screen on a frozen "
                "backbone, not a finished model), and SIF weights from real token frequencies add the down-weighting "
                "of frequent tokens that its pooling did not learn."
                if name == "smollm2-135m"
                else ""
            ),
            "",
        ]
    missing = [t for t in tasks if t not in done]
    if missing:
        lines += [f"Tasks without every model's result (left out above): {', '.join(missing)}.", ""]
    # SIF vs Zipf, with CIs (embedlab.eval.report: paired bootstrap per task, hierarchical per category)
    res = tdir(name) / "results"
    if "sif" in models:
        cmp = compare([res / "zipf", res / "sif"], resamples=1000, seed=0)
        from embedlab.eval.significance import hierarchical_bootstrap

        both = [t for t in done if t in scores["sif"] and t in scores["zipf"]]
        hier = hierarchical_bootstrap(
            [(scores["zipf"][t]["per_example"], scores["sif"][t]["per_example"]) for t in both], resamples=1000, seed=0
        )
        lines += [
            "### SIF from a real corpus vs Zipf by rank (same PCA; Δ = SIF − Zipf, points ×100)",
            "",
            f"Over all {len(both)} tasks: mean Δ **{100 * hier.delta:+.2f}** points, hierarchical-bootstrap 95% CI "
            f"[{100 * hier.ci_low:+.2f}, {100 * hier.ci_high:+.2f}] (datasets, then items, resampled; 1000 resamples).",
            "",
            *_demote(to_markdown(cmp)),
            "",
        ]
    if "peer_model2vec" in models:
        cmp = compare([res / "peer_model2vec", res / "zipf"], resamples=1000, seed=0)
        agree = pair_agreement(tdir(name) / "zipf", tdir(name) / "peer_model2vec")
        lines += [
            "### embedlab's Zipf student vs model2vec's own distillation (Δ = embedlab − model2vec)",
            "",
            *_demote(to_markdown(cmp)),
            "",
            f"Agreement of the two static models on the 1,379 STS-B test pairs: Spearman of their pair cosines "
            f"**{agree['spearman']:.4f}**, mean |Δ cosine| {agree['mean_abs_diff']:.4f}.",
            "",
        ]
    speed_file = tdir(name) / "speed.json"
    if speed_file.is_file():
        sp = json.loads(speed_file.read_text())
        t32 = sp["teacher_fp32"]["rate"]
        what = (
            f"the first {sp['texts']:,} of the 2,552 unique STS-B test sentences"
            if sp["texts"] < 2552
            else f"{sp['texts']:,} unique STS-B test sentences"
        )
        lines += [
            f"### Encode speed ({what}, {sp['tokens_per_text']} teacher tokens each on average, one process)",
            "",
            "| encoder | sentences/s (median) | runs | × teacher fp32 |",
            "|---|---|---|---|",
        ]
        for key, label in (
            ("teacher_fp32", "teacher, fp32"),
            ("teacher_bf16", f"teacher, bf16 (emulated on this CPU; {sp['teacher_bf16']['texts']} texts)"),
            ("student_embedlab", "static student, embedlab `encode` (numpy)"),
            ("student_model2vec", "same folder, `model2vec.StaticModel.encode`"),
        ):
            r = sp[key]
            fmt = (lambda x: f"{x:,.1f}") if r["rate"] < 100 else (lambda x: f"{x:,.0f}")
            lines.append(
                f"| {label} | {fmt(r['rate'])} | {', '.join(fmt(x) for x in r['runs'])} | {r['rate'] / t32:,.2g}× |"
                if r["rate"] < t32
                else f"| {label} | {fmt(r['rate'])} | {', '.join(fmt(x) for x in r['runs'])} | {r['rate'] / t32:,.1f}× |"
            )
        lines += [
            "",
            f"embedlab's and model2vec's encodings of these texts differ by at most {sp['max_abs_diff_embedlab_vs_model2vec']:.1e}.",
            "",
        ]
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
        limits = TASK_MAX_LENGTH.get(name, {})
        ax.set_xticks(
            x + 0.4 - width / 2,
            [f"{t} (cut to {limits[t]} tokens)" if t in limits else t for t in tasks],
            rotation=25,
            ha="right",
            fontsize=8,
        )
        top = max(100 * scores[m][t]["main_score"] for m in models for t in tasks)
        ax.set_ylim(0, top * 1.3)  # room for the legend above the bars
        ax.set_ylabel("main score ×100")
        ax.set_title(f"teacher {name} and its static students")
        ax.legend(fontsize=7, ncol=3, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PREFIX_TEACHER = "smollm2-135m"  # the byte-level BPE teacher whose prefix-space section the report shows


def chosen_or_teacher_tasks(name: str, tasks: list[str] | None) -> list[str]:
    return tasks or TEACHER_TASKS.get(name, DEFAULT_TASKS)


def stage_report(teachers: list[str], tasks: list[str] | None, out: Path) -> None:
    from _report import copy_file

    png_rows: list = []
    body = [
        "`embedlab distill MODEL --out DIR` turns any embedlab model into a static embedder: one vector per vocabulary "
        "token, a sentence is the mean of its tokens' vectors (see the bottom of this page for how). Scores are each "
        "task's main metric ×100 as `embedlab eval` computes it, teacher and students on the same tasks and texts. "
        "ImdbClassification is left out for both teachers: its 25,000 test reviews (~300 tokens each) take ~25 minutes "
        "of MiniLM's forward and many hours of SmolLM2's on this 2-core CPU.",
        "",
    ]
    body += summary_table(teachers, tasks)
    for name in teachers:
        body += teacher_section(name, tasks, png_rows)
    missing = [t for t in TEACHERS if t not in teachers]
    if missing:
        body += [
            f"Not measured: teacher(s) {', '.join(f'`{t}`' for t in missing)}; `python bench/static_distill.py "
            "--teacher NAME --stage distill`, then `--stage eval`, `--stage speed` and `--stage report` add it.",
            "",
        ]
    png = out.with_suffix(".png")
    if png_rows:
        tmp = RUNS / png.name
        plot(png_rows, tmp)
        copy_file(tmp, png)
        body += [f"![teacher vs static students]({png.name})", ""]
    prefix_tasks = chosen_or_teacher_tasks(PREFIX_TEACHER, tasks)
    measured = prefix_section(PREFIX_TEACHER, prefix_tasks)
    if measured:  # the prefix-space stage's section, from the same results
        body += [*_marked("prefix-space", [line.replace(f"{REPO}/", "") for line in measured]), ""]
    body += [
        "## Use",
        "",
        "```bash",
        "embedlab distill minilm-l6 --out static/                 # PCA 256, Zipf weights (model2vec's recipe)",
        "embedlab distill minilm-l6 --out static-sif/ --corpus texts.txt --sif-a 1e-3   # SIF weights from real frequencies",
        "embedlab distill smollm2-135m --pooling mean --attention bidirectional --out static-llm/",
        "embedlab distill my-saved-embedder/ --prompt query --out static-q/   # the teacher's named prompt before every token",
        "embedlab distill runs/trained/ --out static-m5/     # a saved trained embedder (embedlab train, any head): its head is in every row",
        "embedlab encode -m static/ -i texts.txt -o vectors.npy   # and eval, index build, search, serve, info",
        "```",
        "",
        "```python",
        "import embedlab",
        "from embedlab.models.static import distill",
        'student, provenance = distill(embedlab.load("minilm-l6"), dims=256)   # corpus=..., prompt_name=...',
        'student.save("static/", provenance=provenance)',
        'vecs = embedlab.load("static/").encode(["a cat sits on the mat"])   # numpy, no torch in the loop',
        "",
        "from model2vec import StaticModel                      # the same folder, the same vectors",
        'StaticModel.from_pretrained("static/").encode(["a cat sits on the mat"])',
        "from sentence_transformers import SentenceTransformer   # loads as StaticEmbedding + Normalize",
        'SentenceTransformer("static/")',
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
        "",
        *_marked("prefix-space-summary", prefix_summary(PREFIX_TEACHER, prefix_tasks)),
    ]
    body = [line.replace(f"{REPO}/", "") for line in body]  # repository-relative paths, not this checkout's
    write_markdown(out, "Static distillation: a model2vec-style static embedder from any embedlab model", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", action="append", help="repeatable; default minilm-l6")
    parser.add_argument(
        "--stage",
        choices=["all", "distill", "eval", "speed", "report", "prefix-space"],
        default="all",
        help="all = distill, eval, speed, report; prefix-space (not in all): both students of issue 22.15",
    )
    parser.add_argument("--tasks", default=None, help="comma-separated; default: the teacher's TEACHER_TASKS")
    parser.add_argument(
        "--only", default=None, help="eval stage: only these models (teacher,zipf,sif,plain,peer_model2vec)"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip model2vec's own distillation")
    parser.add_argument(
        "--bf16-texts",
        type=int,
        default=None,
        help="texts for the (slow, emulated) bf16 teacher timing (default: BF16_TEXTS of the teacher)",
    )
    parser.add_argument(
        "--grid-head",
        default=str(GRID_HEAD),
        help="the grid's trained multi_layer-bidirectional folder (smollm2-135m's teacher head)",
    )
    parser.add_argument(
        "--report-teachers", default=None, help="teachers shown in the report (default: every one with results)"
    )
    parser.add_argument("--out", default=str(REPO / "docs" / "static.md"))
    args = parser.parse_args()
    teachers = args.teacher or ["minilm-l6"]
    chosen = [t for t in args.tasks.split(",") if t] if args.tasks else None
    for name in teachers:
        tasks = chosen_or_teacher_tasks(name, chosen)
        if args.stage == "prefix-space":
            stage_prefix_space(name, tasks, Path(args.grid_head), Path(args.out))
        if args.stage in ("all", "distill"):
            stage_distill(name, peer=not args.no_peer and name == "minilm-l6", grid_head=Path(args.grid_head))
        if args.stage in ("all", "eval"):
            stage_eval(name, tasks, args.only.split(",") if args.only else None)
        if args.stage in ("all", "speed"):
            stage_speed(name, args.bf16_texts or BF16_TEXTS.get(name, 512))
    if args.stage in ("all", "report"):
        shown = (
            args.report_teachers.split(",")
            if args.report_teachers
            else [t for t in TEACHERS if (tdir(t) / "results" / "teacher").is_dir()]
        )
        stage_report(shown, chosen, Path(args.out))


if __name__ == "__main__":
    main()
