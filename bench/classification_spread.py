"""How much does MTEB's few-shot classification score move with the undersampling RNG stream?

MTEB draws its training examples with numpy's global RNG (seeded 42 when the task object is built)
and carries it across splits and subsets, so a score depends on the exact stream and row order.
This script re-runs the protocol with seeds 0..N-1 and prints, per subset, the mean and standard
deviation of the accuracy and where MTEB's published score falls.

    python bench/classification_spread.py [--task AmazonCounterfactualClassification] [--seeds 20]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--task", default="AmazonCounterfactualClassification")
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()

    from embedlab.eval import evaluators as ev
    from embedlab.eval.registry import select_tasks
    from embedlab.eval.runner import EmbeddingCache, make_encoder
    from embedlab.models import Embedder
    from embedlab.settings import data_dir

    task = select_tasks(args.task)[0]
    emb = Embedder.from_pretrained(args.model)
    encode = make_encoder(emb, prompts={}, dtype="fp32", cache=EmbeddingCache())
    refs = {}
    ref_file = Path(data_dir() or ".").parent / "reference" / "mteb_scores.json"
    if ref_file.is_file():
        refs = {(r["split"], r["hf_subset"]): 100 * r["main_score"] for r in json.loads(ref_file.read_text())["scores"]
                if r["task"] == task.mteb_name and r["model"].endswith("all-MiniLM-L6-v2")}
    subsets = task.subsets or ["default"]
    splits = task.eval_splits or [task.split]
    runs: dict[tuple[str, str], list[float]] = {(sp, sub): [] for sp in splits for sub in subsets}
    data = {}
    for sub in subsets:
        prefix = "" if sub == "default" else f"{sub}/"
        data[sub] = {sp: ev._read_labelled(task, f"{prefix}{sp}") for sp in ["train", *splits]}
    texts = list(dict.fromkeys(t for d in data.values() for texts_, _ in d.values() for t in texts_))
    table = dict(zip(texts, encode(texts, "query")))  # encode every text once; experiments look vectors up

    def lookup(xs: list[str], role: str) -> np.ndarray:
        return np.stack([table[x] for x in xs])

    for seed in range(args.seeds):
        rng = np.random.RandomState(seed)
        for sp in splits:
            for sub in subsets:
                s, _ = ev._few_shot(task, lookup, data[sub]["train"], data[sub][sp], rng)
                runs[(sp, sub)].append(100 * s["accuracy"])
    print(f"{task.name}: accuracy over {args.seeds} undersampling streams ({task.samples_per_label} per label, "
          f"{task.n_experiments} experiments each)")
    print(f"{'split/subset':22s} {'mean':>7s} {'std':>6s} {'min':>7s} {'max':>7s} {'MTEB':>7s} {'z':>6s}")
    for (sp, sub), values in runs.items():
        v = np.array(values)
        ref = refs.get((sp, sub))
        z = f"{(ref - v.mean()) / v.std():+6.2f}" if ref is not None and v.std() > 0 else "     -"
        ref_s = f"{ref:7.2f}" if ref is not None else "      -"
        print(f"{sp + '/' + sub:22s} {v.mean():7.2f} {v.std():6.2f} {v.min():7.2f} {v.max():7.2f} {ref_s} {z}")


if __name__ == "__main__":
    main()
