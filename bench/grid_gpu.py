"""The `lora` design grid (the paper's protocol) on a GPU, for a lent device.

    python bench/grid_gpu.py --output runs/grid-gpu [--steps 200] [--tasks ...]

SmolLM2-135M (the packaged model; no hub here), 8 designs = {last_token, mean, latent_attention,
multi_layer} x {causal, bidirectional}, LoRA r16/alpha32/dropout 0.1 on all linear layers, the head in
full, bf16, one hard negative, GradCache micro-batches of 64 under a contrastive batch of 128. Writes
OUTPUT/report.md (+ .png, .json) and prints the device name and wall time; copy the table into
docs/grid.md with the device named.
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="runs/grid-gpu")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--tasks", default="STSBenchmark,STS12,STS14,STS15,SICK-R,TrecQA,SciFact,Banking77Classification")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script is for a lent GPU (the CPU grid is `embedlab grid --preset cpu-small`)")
    from embedlab.train.grid import grid_config, run_grid

    grid = grid_config({
        "preset": "cpu-small", "mode": "lora", "output": args.output, "tasks": args.tasks.split(","),
        "lora_train": {"lora": {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": "all-linear"}, "lr": 2e-4,
                       "steps": args.steps, "warmup_steps": args.steps // 10, "batch_size": args.batch_size,
                       "micro_batch_size": 64, "max_length": 128, "device": "cuda"},
        "train": {"device": "cuda", "data": [{"source": "snli-triplets"}, {"source": "trecqa-train"},
                                            {"source": "stsb-pairs"}]},
    })
    t0 = time.perf_counter()
    report = run_grid(grid, progress=print)
    print(report["markdown"])
    print(f"device: {torch.cuda.get_device_name()}; wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
