"""Data parallelism: 2 CPU processes on gloo (torchrun) train exactly like one process on the whole
batch, because candidates are gathered across processes with their gradients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from embedlab.train import TrainConfig, Trainer

WORDS = [
    "the cat sat",
    "a dog ran",
    "the sky is blue",
    "i read a book",
    "the red car",
    "a big house",
    "the moon",
    "we write code",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tiny_llama, tmp_path):
    rows = [
        {"query": w, "positive": f"{w} and more", "negatives": [f"not {WORDS[(i + 3) % 8]}"]}
        for i, w in enumerate(WORDS)
    ]  # never another row's query
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # batch 6 of 8 examples: process 0 and 1 each embed 3 queries, 3 positives, 3 negatives
    base = dict(
        model=str(tiny_llama),
        pooling="mean",
        data=str(data),
        steps=3,
        batch_size=6,
        lr=5e-3,
        warmup_steps=0,
        hard_negatives=1,
        log_every=1,
        micro_batch_size=2,
    )
    single = Trainer(TrainConfig(**base, output=str(tmp_path / "one")), show_progress=False).fit()
    cfg = tmp_path / "ddp.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({**base, "output": str(tmp_path / "two")}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "embedlab.cli",
        "train",
        str(cfg),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(x) for x in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert next(r for r in records if r.get("event") == "stage")["processes"] == 2
    steps = [r for r in records if "loss" in r]
    assert [r["candidates_per_query"] for r in steps] == [12, 12, 12]  # 6 positives + 6 negatives from both processes
    assert [r["loss"] for r in steps] == pytest.approx(single.losses, rel=1e-4)  # same updates as one process
    assert (tmp_path / "two" / "model" / "modules.json").is_file()


def test_gather_with_grad_is_identity_alone():
    import torch

    from embedlab.train.distributed import gather_with_grad, sum_gradients, world

    x = torch.randn(3, 2, requires_grad=True)
    assert world() == (0, 1) and gather_with_grad(x) is x
    sum_gradients([torch.nn.Parameter(torch.zeros(1))])  # a no-op without a process group
