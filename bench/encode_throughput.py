"""Encode throughput: embedlab vs SentenceTransformer.encode on the same model and texts, same run.

Prints sentences/s for each, the ratio, and the minimum cosine against the fp32 reference. The whole
measurement (each configuration best of ``--repeats``) is repeated ``--runs`` times; the table written to
``--out`` (default docs/encode_throughput.md) gives per configuration the ratio of the best times over
all runs and the min–max of the per-run ratios, with the command, date and machine facts.

    python bench/encode_throughput.py [--model minilm-l6] [--n 2000] [--repeats 3] [--runs 3] [--out docs/encode_throughput.md]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _report import write_markdown


def load_texts(n: int) -> list[str]:
    from embedlab.settings import data_dir

    texts: list[str] = []
    root = data_dir()
    if root is not None:
        for name in ("stsbenchmark/test.tsv", "stsbenchmark/dev.tsv", "sick-r/test.tsv"):
            path = Path(root) / name
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines()[1:]:
                    texts.extend(line.split("\t")[:2])
            if len(texts) >= n:
                break
    if not texts:
        from embedlab.demo import _lines

        texts = _lines("demo_corpus.txt")
    while len(texts) < n:
        texts = texts + texts
    return texts[:n]


def best_time(fn, repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--st-batch-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3, help="repeat the whole measurement this many times")
    parser.add_argument("--out", default="docs/encode_throughput.md", help="markdown table written here")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from embedlab.models import Embedder
    from embedlab.models.backbone import resolve_source
    from embedlab.settings import data_dir

    texts = load_texts(args.n)
    print(f"model={args.model} texts={len(texts)} torch threads={torch.get_num_threads()} torch={torch.__version__}")
    emb = Embedder.from_pretrained(args.model)
    target, _ = resolve_source(args.model)
    st = SentenceTransformer(target, device="cpu")
    st.max_seq_length = emb.max_length

    # warm-up both
    st.encode(texts[:64], batch_size=args.st_batch_size)
    emb.encode(texts[:64])
    emb.encode(texts[:64], dtype="bf16")

    configs = ["sentence-transformers fp32", "embedlab fp32", "embedlab bf16"]
    runs: list[dict[str, tuple[float, float]]] = []  # per run: config -> (seconds, min cosine vs ST fp32)
    for run in range(args.runs):
        t_st, ref = best_time(lambda: st.encode(texts, batch_size=args.st_batch_size, convert_to_numpy=True), args.repeats)
        ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        rows = [("sentence-transformers fp32", t_st, 1.0)]
        for dtype in ("fp32", "bf16"):
            t, vec = best_time(lambda: emb.encode(texts, dtype=dtype), args.repeats)
            vec = vec / np.linalg.norm(vec, axis=1, keepdims=True)
            rows.append((f"embedlab {dtype}", t, float((vec * ref).sum(1).min())))
        print(f"\n== run {run + 1}/{args.runs}")
        print(f"{'run':30s} {'sent/s':>10s} {'ratio vs ST':>12s} {'min cos vs fp32':>16s}")
        for name, t, cos in rows:
            print(f"{name:30s} {len(texts) / t:10.1f} {t_st / t:12.2f} {cos:16.6f}")
        runs.append({name: (t, cos) for name, t, cos in rows})

    peer = configs[0]
    best_st = min(r[peer][0] for r in runs)
    n = len(texts)
    source = "STS-B/SICK-R" if data_dir() is not None else "demo-corpus"
    body = [f"Encode throughput, `{args.model}`, {n:,} {source} sentences (max_length {emb.max_length}), "
            f"sentence-transformers batch {args.st_batch_size}; each configuration best of {args.repeats}, the whole "
            f"measurement repeated {args.runs} times in the same process (the peer in every run). "
            "\"best\" = best time over all runs; \"ratio per run\" = each run's own ratio vs sentence-transformers.", "",
            "| configuration | sentences/s (best) | ratio vs ST (best times) | ratio per run, min–max | min cosine vs ST fp32 |",
            "|---|---|---|---|---|"]
    for name in configs:
        best = min(r[name][0] for r in runs)
        ratios = [r[peer][0] / r[name][0] for r in runs]
        cos = min(r[name][1] for r in runs)
        body.append(f"| {name} | {n / best:,.1f} | {best_st / best:.2f} | {min(ratios):.2f}–{max(ratios):.2f} | {cos:.6f} |")
    body += ["", "Per run:", "", "| run | " + " | ".join(f"{c} sent/s" for c in configs) + " | "
             + " | ".join(f"{c} ratio" for c in configs[1:]) + " |", "|---" * (2 * len(configs)) + "|"]
    for i, r in enumerate(runs, 1):
        body.append(f"| {i} | " + " | ".join(f"{n / r[c][0]:,.1f}" for c in configs) + " | "
                    + " | ".join(f"{r[peer][0] / r[c][0]:.2f}" for c in configs[1:]) + " |")
    write_markdown(args.out, "Encode throughput: embedlab vs sentence-transformers", body)


if __name__ == "__main__":
    main()
