"""The `lora` design grid (the paper's protocol) on a GPU, for a lent device.

    python bench/grid_gpu.py --output runs/grid-gpu [--steps 200] [--tasks ...] [--out docs/grid_gpu.md]

SmolLM2-135M (the packaged model; no hub here), the `cpu-small` designs (the paper's Models 1-5, mean
under both attentions and NV-Embed's latent attention), LoRA r16/alpha32/dropout 0.1 on all linear layers, the head in
full, bf16 autocast, one hard negative, a contrastive batch of 128 in one pass (`--micro-batch-size N` turns on
GradCache, whose gradients are the same; an H200 holds the whole batch). Writes
OUTPUT/report.md (+ .png, .json), prints the device name and wall time, and writes OUTPUT's report with
the command, date, device, wall time and machine facts to ``--out`` (default docs/grid_gpu.md; the chart
beside it as docs/grid_gpu.png). An interrupted run resumes design by design (the grid's own resume).

A smoke test of the same path on the CPU, before spending a lent GPU's minutes (tiny task, one step):

    python bench/grid_gpu.py --device cpu --precision fp32 --steps 1 --batch-size 4 --tasks '' \
        --task-dir TINY_TASK --only last_token/causal,latent_attention/bidirectional --output /tmp/smoke --out /tmp/smoke.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _report import copy_file, write_markdown


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="runs/grid-gpu")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--tasks", default="STSBenchmark,STS12,STS14,STS15,SICK-R,TrecQA,SciFact,Banking77Classification")
    p.add_argument("--task-dir", action="append", default=[], help="a task folder (task.json), added to --tasks")
    p.add_argument("--only", default=None, help="a comma-separated subset of pooling/attention designs")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--micro-batch-size", type=int, default=0, help="GradCache micro-batches (0: one pass)")
    p.add_argument("--device", default="cuda", help="cuda; cpu only for a smoke test of this script")
    p.add_argument("--out", default="docs/grid_gpu.md", help="the report, device and wall time are written here")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device: this script is for a lent GPU (the CPU grid is `embedlab grid --preset cpu-small`)"
        )
    from embedlab.experiments.grid import grid_config, run_grid

    grid = grid_config(
        {
            "preset": "cpu-small",
            "mode": "lora",
            "output": args.output,
            "tasks": [t for t in args.tasks.split(",") if t],
            "task_dirs": args.task_dir,
            **({"only": args.only.split(",")} if args.only else {}),
            "lora_train": {
                "lora": {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": "all-linear"},
                "lr": 2e-4,
                "steps": args.steps,
                "warmup_steps": args.steps // 10,
                "batch_size": args.batch_size,
                **({"micro_batch_size": args.micro_batch_size} if args.micro_batch_size else {}),
                "max_length": 128,
                "precision": args.precision,
                "device": args.device,
            },
            "train": {
                "device": args.device,
                "data": [{"source": "snli-triplets"}, {"source": "trecqa-train"}, {"source": "stsb-pairs"}],
            },
        }
    )
    t0 = time.perf_counter()
    report = run_grid(grid, show_progress=True)
    wall = time.perf_counter() - t0
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(report["markdown"])
    print(f"device: {device}; wall time {wall:.0f} s")
    out = Path(args.out)
    body = [
        f"The `lora` design grid on a GPU: device **{device}**, wall time **{wall:.0f} s** "
        f"({args.steps} steps, contrastive batch {args.batch_size}"
        + (f" in GradCache micro-batches of {args.micro_batch_size}" if args.micro_batch_size else " in one pass")
        + f", {args.precision}, results in `{args.output}`).",
        "",
    ]
    designs = Path(args.output) / "designs.json"
    if designs.is_file():  # what each design cost on this device (the grid records it per design)
        body += ["| design | train s | train tokens/s | eval s |", "|---|---:|---:|---:|"]
        for name, d in json.loads(designs.read_text()).items():
            body.append(
                f"| `{name}` | {d.get('train_seconds', '–')} | {d.get('tokens_per_s', '–')} | {d.get('eval_seconds', '–')} |"
            )
        body.append("")
    if Path(report["plot"]).is_file():
        png = copy_file(report["plot"], out.with_suffix(".png"))
        body += [f"![design grid]({png.name})", ""]
    # OUTPUT/report.md, its title demoted one level under this file's
    body += [("#" + line) if line.startswith("#") else line for line in report["markdown"].splitlines()]
    write_markdown(out, "Design grid on a GPU (bench/grid_gpu.py)", body, extra={"wall time": f"{wall:.0f} s"})


if __name__ == "__main__":
    main()
