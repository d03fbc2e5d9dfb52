"""Truncated embeddings: a plain-trained vs a Matryoshka-trained minilm-l6 (same data, steps, seed).

Both are fine-tuned with in-batch InfoNCE on STS-B train pairs scored >= 4; the Matryoshka run adds
the loss over the prefixes 384/256/128/64/32. Each is then scored on STSBenchmark test with its
embeddings truncated (and renormalised) to each size.

    python bench/matryoshka_truncation.py [--steps 80] [--out docs/matryoshka_truncation.md]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

DIMS = [384, 256, 128, 64, 32, 16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="docs/matryoshka_truncation.md")
    args = parser.parse_args()

    from embedlab.eval.registry import builtin_tasks
    from embedlab.eval.runner import run_task
    from embedlab.models import Embedder
    from embedlab.train import TrainConfig, run
    from embedlab.train.data import DataSpec

    task = builtin_tasks()["STSBenchmark"]
    tmp = Path(tempfile.mkdtemp())
    rows = {}
    for name, dims in (("plain InfoNCE", None), ("Matryoshka InfoNCE", [384, 256, 128, 64, 32])):
        cfg = TrainConfig(
            model="minilm-l6",
            data=DataSpec(source="stsb-pairs", instruction=""),
            output=str(tmp / name.replace(" ", "_")),
            steps=args.steps,
            batch_size=args.batch_size,
            lr=2e-5,
            warmup_steps=8,
            matryoshka_dims=dims,
        )
        run(cfg)
        rows[name] = [
            100 * run_task(task, Embedder.from_pretrained(Path(cfg.output) / "model", dim=d), tmp / "res")["main_score"]
            for d in DIMS
        ]
    base = Embedder.from_pretrained("minilm-l6")
    rows = {
        "untrained minilm-l6": [
            100 * run_task(task, Embedder.from_pretrained("minilm-l6", dim=d), tmp / "res")["main_score"] for d in DIMS
        ],
        **rows,
    }
    del base
    lines = [
        f"STSBenchmark test, cosine Spearman ×100, embeddings truncated to d dims and renormalised "
        f"({args.steps} steps × {args.batch_size} STS-B train pairs, lr 2e-5, τ 0.05, seed 42).",
        "",
        "| model | " + " | ".join(f"d={d}" for d in DIMS) + " |",
        "|---|" + "---|" * len(DIMS),
    ]
    for name, scores in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{s:.2f}" for s in scores) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
