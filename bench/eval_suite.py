"""Run the whole shared task suite for one model, print wall time per task and in total, then run it
again from the embedding cache (the second run should take under 10% of the first), and compare each
task's main score with MTEB's published score where one exists.

Writes the table (scores, MTEB's, Δ, per-task time of both runs, totals) with the command, date and
machine facts to ``--out`` (default docs/eval_suite.md). The first run is cold only if the embedding
cache holds nothing for this model: the file records how many cached embeddings existed at the start.

    python bench/eval_suite.py [--model minilm-l6] [--tasks all] [--results runs/suite] [--dtype fp32] [--out docs/eval_suite.md]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _report import write_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--results", default="runs/suite", help="per-task result folders are written here")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--out", default="docs/eval_suite.md", help="markdown table written here")
    args = parser.parse_args()

    from embedlab.eval.registry import select_tasks
    from embedlab.eval.runner import EmbeddingCache, run_task
    from embedlab.models import Embedder
    from embedlab.settings import data_dir

    emb = Embedder.from_pretrained(args.model)
    tasks = select_tasks(args.tasks)
    ref_file = Path(data_dir() or ".").parent / "reference" / "mteb_scores.json"
    refs = {}
    if ref_file.is_file():
        for r in json.loads(ref_file.read_text())["scores"]:
            if r["model"].endswith("all-MiniLM-L6-v2"):
                refs[(r["task"], r["split"], r["hf_subset"])] = 100 * r["main_score"]
    cache = EmbeddingCache()
    # cached embeddings per model fingerprint before the first run (this model's is looked up afterwards,
    # so that hashing its weights stays inside the timed first run as before)
    cached_before = (
        {d.name: sum(1 for _ in d.glob("*.npy")) for d in cache.root.iterdir() if d.is_dir()}
        if cache.root.is_dir()
        else {}
    )
    totals = []
    # per run: task name -> (rows [(name, score, ref)], seconds) or the failure message
    results: list[dict[str, tuple[list[tuple[str, float, float | None]], float] | str]] = []
    for run in ("first", "cached"):
        total = 0.0
        done: dict[str, tuple[list[tuple[str, float, float | None]], float] | str] = {}
        print(f"\n== {run} run ({args.model}, {args.dtype})")
        print(f"{'task':42s} {'score':>7s} {'MTEB':>7s} {'delta':>7s} {'time s':>8s}")
        for task in tasks:
            start = time.perf_counter()
            try:
                result = run_task(task, emb, Path(args.results), dtype=args.dtype, cache=cache)
            except Exception as exc:  # one broken task must not stop the suite
                print(f"{task.name:42s} FAILED: {exc}")
                done[task.name] = "FAILED: " + " ".join(str(exc).split()).replace("|", "/")
                continue
            took = time.perf_counter() - start
            total += took
            rows = [(task.name, 100 * result["main_score"], refs.get((task.mteb_name, task.split, "default")))]
            if task.subsets:
                rows += [
                    (
                        f"  {split}/{sub}",
                        100 * result["scores"][f"{split}/{sub}/accuracy"],
                        refs.get((task.mteb_name, split, sub)),
                    )
                    for split in task.eval_splits or [task.split]
                    for sub in task.subsets
                ]
            for i, (name, score, ref) in enumerate(rows):
                ref_s = f"{ref:7.2f}" if ref is not None else "      -"
                delta = f"{score - ref:+7.2f}" if ref is not None else "      -"
                print(f"{name:42s} {score:7.2f} {ref_s} {delta} {took if i == 0 else 0:8.1f}")
            done[task.name] = (rows, took)
        print(f"{'total':42s} {'':7s} {'':7s} {'':7s} {total:8.1f}")
        totals.append(total)
        results.append(done)
    ratio = totals[1] / totals[0] if totals[0] else float("nan")
    print(f"\ncached run / first run = {ratio:.3f}")

    first, cached = results
    cached_at_start = cached_before.get(emb.fingerprint(), 0)
    body = [
        f"`{args.model}`, dtype {args.dtype}, tasks `{args.tasks}` ({len(tasks)}). Scores ×100; MTEB = "
        f"`{ref_file}` ({'found' if ref_file.is_file() else 'missing'}), all-MiniLM-L6-v2 rows. The suite runs twice "
        f"in one process; the second run is served from the embedding cache (`{cache.root}`, which held "
        f"{cached_at_start:,} cached embedding files for this model at the start — 0 means the first run was cold).",
        "",
        "| task | split / subset | score | MTEB | Δ | first run s | cached run s |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        got, again = first.get(task.name), cached.get(task.name)
        if isinstance(got, str) or got is None:
            body.append(f"| {task.name} | – | {got or 'not run'} | | | | |")
            continue
        rows, took = got
        again_s = (again or "not run") if isinstance(again, str) or again is None else f"{again[1]:.1f}"
        for i, (name, score, ref) in enumerate(rows):
            ref_s = f"{ref:.2f}" if ref is not None else "–"
            delta = f"{score - ref:+.2f}" if ref is not None else "–"
            if i == 0:
                split = task.split if not task.subsets else "main score"
                body.append(f"| {task.name} | {split} | {score:.2f} | {ref_s} | {delta} | {took:.1f} | {again_s} |")
            else:
                body.append(f"| | {name.strip()} | {score:.2f} | {ref_s} | {delta} | | |")
        if not isinstance(again, (str, type(None))) and [round(r[1], 2) for r in again[0]] != [
            round(r[1], 2) for r in rows
        ]:
            body.append(f"| | cached run scores differ: {', '.join(f'{r[1]:.2f}' for r in again[0])} | | | | | |")
    body += [
        f"| **total** | | | | | {totals[0]:.1f} | {totals[1]:.1f} |",
        "",
        f"Cached run / first run = **{ratio:.3f}** ({100 * ratio:.2f}%).",
    ]
    write_markdown(args.out, f"Evaluation suite: {args.model} vs MTEB's published scores", body)


if __name__ == "__main__":
    main()
