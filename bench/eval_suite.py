"""Run the whole shared task suite for one model, print wall time per task and in total, then run it
again from the embedding cache (the second run should take under 10% of the first), and compare each
task's main score with MTEB's published score where one exists.

    python bench/eval_suite.py [--model minilm-l6] [--tasks all] [--out runs/suite] [--dtype fp32]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--out", default="runs/suite")
    parser.add_argument("--dtype", default="fp32")
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
    totals = []
    for run in ("first", "cached"):
        total = 0.0
        print(f"\n== {run} run ({args.model}, {args.dtype})")
        print(f"{'task':42s} {'score':>7s} {'MTEB':>7s} {'delta':>7s} {'time s':>8s}")
        for task in tasks:
            start = time.perf_counter()
            try:
                result = run_task(task, emb, Path(args.out), dtype=args.dtype, cache=cache)
            except Exception as exc:  # one broken task must not stop the suite
                print(f"{task.name:42s} FAILED: {exc}")
                continue
            took = time.perf_counter() - start
            total += took
            rows = [(task.name, 100 * result["main_score"], refs.get((task.mteb_name, task.split, "default")))]
            if task.subsets:
                rows += [(f"  {split}/{sub}", 100 * result["scores"][f"{split}/{sub}/accuracy"], refs.get((task.mteb_name, split, sub)))
                         for split in task.eval_splits or [task.split] for sub in task.subsets]
            for i, (name, score, ref) in enumerate(rows):
                ref_s = f"{ref:7.2f}" if ref is not None else "      -"
                delta = f"{score - ref:+7.2f}" if ref is not None else "      -"
                print(f"{name:42s} {score:7.2f} {ref_s} {delta} {took if i == 0 else 0:8.1f}")
        print(f"{'total':42s} {'':7s} {'':7s} {'':7s} {total:8.1f}")
        totals.append(total)
    print(f"\ncached run / first run = {totals[1] / totals[0]:.3f}")


if __name__ == "__main__":
    main()
