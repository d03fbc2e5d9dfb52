"""Training throughput against sentence-transformers, and peak memory with and without GradCache.

1. Tokens/s: embedlab's trainer vs sentence-transformers' ``SentenceTransformerTrainer`` with
   ``MultipleNegativesRankingLoss`` — same model (minilm-l6), data (SNLI triplets: anchor, positive,
   one hard negative), batch, max length, lr and number of steps, in the same run; each in its own
   subprocess, fp32, best of ``--repeats``.
2. Peak memory (RSS on CPU, ``max_memory_allocated`` on CUDA) of a contrastive batch of 256 triplets
   (768 texts) with and without GradCache (micro-batch 32), each in its own subprocess.

Run: ``python bench/train_throughput.py`` (needs the ``bench`` extra: ``pip install -e '.[bench]'``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _triplets(n: int, path: Path) -> None:
    from embedlab.train.data import load_dataset

    rows = [{"query": e.query, "positive": e.positive, "negatives": list(e.negatives[:1])} for e in load_dataset("snli-triplets")[:n]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _model_path() -> str:
    from embedlab.models.aliases import ALIASES

    return str(ALIASES["minilm-l6"].locate())


def worker_embedlab(args: argparse.Namespace) -> dict:
    from embedlab.train import Trainer, TrainConfig

    cfg = TrainConfig(model="minilm-l6", data=args.data, output=tempfile.mkdtemp() + "/o", steps=args.steps, batch_size=args.batch,
                      lr=2e-5, warmup_steps=0, hard_negatives=1, max_length=args.max_length, mask_false_negatives=False,
                      micro_batch_size=args.micro or None, weight_decay=0.01)
    trainer = Trainer(cfg, show_progress=False)
    import torch

    if torch.cuda.is_available():
        trainer.embedder.cuda()
        trainer.device = torch.device("cuda")
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    return {"tokens": result.tokens, "seconds": seconds, "loss": result.losses[-1], "peak": _peak()}


def worker_st(args: argparse.Namespace) -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    rows = [json.loads(x) for x in Path(args.data).read_text().splitlines()]
    ds = Dataset.from_dict({"anchor": [r["query"] for r in rows], "positive": [r["positive"] for r in rows],
                            "negative": [r["negatives"][0] for r in rows]})
    model = SentenceTransformer(_model_path(), device="cpu")
    model.max_seq_length = args.max_length
    tok = model.tokenizer
    tokens = 0
    n_used = args.steps * args.batch
    for col in ("anchor", "positive", "negative"):
        ids = tok(ds[col][:n_used], truncation=True, max_length=args.max_length)["input_ids"]
        tokens += sum(len(x) for x in ids)
    targs = SentenceTransformerTrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch,
                                                 max_steps=args.steps, learning_rate=2e-5, warmup_steps=0, weight_decay=0.01,
                                                 logging_steps=10**6, save_strategy="no", report_to=[], use_cpu=True,
                                                 dataloader_drop_last=True, seed=42)
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=ds, loss=MultipleNegativesRankingLoss(model))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return {"tokens": tokens, "seconds": seconds, "peak": _peak()}


def _peak() -> int:
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run(kind: str, **kw: object) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind] + [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=["embedlab", "st"])
    p.add_argument("--data")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--micro", type=int, default=0)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--memory-batch", type=int, default=256)
    p.add_argument("--memory-steps", type=int, default=2)
    p.add_argument("--out", default="docs/train_throughput.md")
    args = p.parse_args()
    if args.worker:
        fn = worker_embedlab if args.worker == "embedlab" else worker_st
        print(json.dumps(fn(args)))
        return
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "snli.jsonl"
    _triplets(max(args.steps * args.batch, args.memory_batch * args.memory_steps), data)
    common = dict(data=data, steps=args.steps, batch=args.batch, max_length=args.max_length)
    runs: dict[str, list[dict]] = {"sentence-transformers (MNRL)": [], "embedlab": [], "embedlab + GradCache (micro 8)": []}
    for _ in range(args.repeats):
        runs["sentence-transformers (MNRL)"].append(_run("st", **common))
        runs["embedlab"].append(_run("embedlab", **common))
        runs["embedlab + GradCache (micro 8)"].append(_run("embedlab", **common, micro=8))
    best = {k: max(v, key=lambda r: r["tokens"] / r["seconds"]) for k, v in runs.items()}
    peer = best["sentence-transformers (MNRL)"]
    peer_tps = peer["tokens"] / peer["seconds"]
    lines = [f"Training throughput, minilm-l6 fp32, SNLI triplets (1 hard negative), batch {args.batch}, max_length "
             f"{args.max_length}, {args.steps} steps, best of {args.repeats}, same run:", "",
             "| trainer | tokens | seconds | tokens/s | ratio vs sentence-transformers |", "|---|---|---|---|---|"]
    for name, r in best.items():
        tps = r["tokens"] / r["seconds"]
        lines.append(f"| {name} | {r['tokens']:,} | {r['seconds']:.1f} | {tps:,.0f} | {tps / peer_tps:.2f} |")
    mem = {}
    micro = min(32, args.memory_batch)
    for label, micro in (("no GradCache", 0), (f"GradCache, micro-batch {micro}", micro)):
        mem[label] = _run("embedlab", data=data, steps=args.memory_steps, batch=args.memory_batch, max_length=args.max_length, micro=micro)
    base = mem["no GradCache"]["peak"]
    lines += ["", f"Peak memory (process RSS on CPU) for a contrastive batch of {args.memory_batch} triplets "
                  f"({3 * args.memory_batch} texts, {args.memory_steps} steps), minilm-l6 fp32:", "",
              "| setting | peak memory | ratio | loss (step 2) |", "|---|---|---|---|"]
    for label, r in mem.items():
        lines.append(f"| {label} | {r['peak'] / 2**20:,.0f} MiB | {r['peak'] / base:.2f} | {r['loss']:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(f"# Training benchmark\n\nCommand: `python bench/train_throughput.py`\n\n{text}")


if __name__ == "__main__":
    main()
