"""The cost of hard debiasing a sentence embedder: bias and quality before and after.

For one model per run (results of earlier runs are kept in ``--json`` and every model there is
written to ``--out``):

* the gender subspace from debiaswe's 10 definitional pairs (words embedded alone), k = 1, with the
  variance each principal component explains;
* DirectBias_1 over the gender-neutral professions, before and after;
* WEAT 1-10 and SEAT (the same tests in bleached templates), effect size d and one-sided permutation
  p (exact up to 1e5 partitions, else 1e5 seeded random permutations), before and after;
* quality on STS and classification tasks with the paired-bootstrap 95% CI and p of each Δ
  (``embedlab.eval.significance.paired_bootstrap``, 1,000 resamples, seed 0);
* Gonen & Goldberg's clustering check: the ``--gg-words`` most male- and most female-projected
  words (projection on he − she in the original space, as in the paper) of a vocabulary sample (whole words of the model's tokenizer, gender-specific words
  removed), clustered into two groups with k-means before and after debiasing; alignment of the
  clusters with the original gender split (0.5 = none, 1 = perfect).

The debiased model is the real chain (``debias_embedder``: pooling → projection → normalize), not
vectors projected after the fact. Embeddings go through the evaluation's embedding cache, so a run
that is stopped resumes where it was.

    python bench/bias_cost.py --model minilm-l6
    python bench/bias_cost.py --model smollm2-135m --pooling mean --name "smollm2-135m (mean)" --tasks STSBenchmark,Banking77Classification
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from _report import REPO, command, write_markdown

STS = ["STSBenchmark", "SICK-R", "STS12", "STS14", "STS15"]
CLASSIFICATION = ["Banking77Classification", "TweetSentimentExtractionClassification", "MR", "CR"]
GENDER_TESTS = ("weat6", "weat7", "weat8")


class CachedEncoder:
    """``encode(texts)`` through the evaluation's encoder (de-duplication + on-disk embedding cache)."""

    def __init__(self, emb, cache) -> None:
        from embedlab.eval.runner import make_encoder

        self.emb = emb
        self._encode = make_encoder(emb, prompts={}, dtype="fp32", cache=cache)

    def encode(self, texts):
        return self._encode(list(texts), "query")


def run_model(args) -> dict:
    from embedlab.analysis import bias
    from embedlab.eval.registry import select_tasks
    from embedlab.eval.runner import EmbeddingCache, run_task
    from embedlab.eval.significance import paired_bootstrap
    from embedlab.models import Embedder
    from embedlab.models.debias import debias_embedder

    start = time.perf_counter()
    cache = EmbeddingCache()
    emb = Embedder.from_pretrained(args.model, **({"pooling": args.pooling} if args.pooling else {}))
    lists = bias.debiaswe_lists()
    base = CachedEncoder(emb, cache)
    print(f"[{args.name}] subspace and DirectBias", flush=True)
    before_dir = bias.direction_report(base, lists, k=args.k)
    sub = before_dir["subspace"]
    debiased = debias_embedder(emb, sub.basis, info={"source_model": args.model, "k": args.k})
    after_enc = CachedEncoder(debiased, cache)
    after_dir = bias.direction_report(after_enc, lists, subspace=sub)

    print(f"[{args.name}] WEAT and SEAT", flush=True)
    tests = list(bias.builtin_tests().values())
    weat = {}
    for label, enc in (("before", base), ("after", after_enc)):
        weat[label] = [r.to_dict() for r in bias.run_tests(enc, tests, ("weat", "seat"), seed=0)]

    quality = []
    for task in select_tasks(",".join(args.tasks)):
        print(f"[{args.name}] {task.name}", flush=True)
        out = Path(args.results) / args.slug
        r0 = run_task(task, emb, out / "before", cache=cache)
        r1 = run_task(task, debiased, out / "after", cache=cache)
        bs = paired_bootstrap(r0["per_example"], r1["per_example"], resamples=1000, seed=0)
        quality.append(
            {
                "task": task.name,
                "type": task.type,
                "metric": task.main_metric,
                "before": r0["main_score"],
                "after": r1["main_score"],
                "delta": bs.delta,
                "ci_low": bs.ci_low,
                "ci_high": bs.ci_high,
                "p": bs.p_value,
                "n": bs.n,
            }
        )

    print(f"[{args.name}] Gonen & Goldberg clustering", flush=True)
    gendered = set(lists["gender_specific_full"]) | {
        w for p in lists["definitional_pairs"] + lists["equalize_pairs"] for w in p
    }
    vocab = bias.vocabulary_words(emb.tokenizer, exclude=gendered, limit=args.gg_vocab)
    vb, va = base.encode(vocab), after_enc.encode(vocab)
    he_she = bias.gender_direction(base)  # Gonen & Goldberg rank words on he - she in the original space
    gg = bias.gonen_goldberg(vb, va, sub, n=args.gg_words, seed=0, direction=he_she)
    proj = bias.unit(vb) @ bias.unit(he_she[None])[0]
    order = np.argsort(proj)

    return {
        "name": args.name,
        "model": args.model,
        "pooling": emb.head.name,
        "attention": emb.attention,
        "chain_after": " -> ".join(m.kind for m in debiased.chain),
        "command": command(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.perf_counter() - start, 1),
        "direction": {
            "explained_variance_ratio": before_dir["explained_variance_ratio"],
            "k": sub.k,
            "neutral_words": before_dir["neutral_words"],
            "direct_bias_before": before_dir["direct_bias"],
            "direct_bias_after": after_dir["direct_bias"],
            "most_positive": before_dir["most_positive"],
            "most_negative": before_dir["most_negative"],
        },
        "weat": weat,
        "quality": quality,
        "gonen_goldberg": {
            **gg.to_dict(),
            "vocabulary": len(vocab),
            "examples_positive": [vocab[i] for i in order[::-1][:8]],
            "examples_negative": [vocab[i] for i in order[:8]],
        },
    }


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" + ("*" if p < 0.05 else "")


def render(runs: dict) -> list[str]:
    lines = [
        "How much does hard debiasing (Bolukbasi et al. 2016's neutralise step, as a projection module in the "
        "chain) remove, and what does it cost? See [bias.md](bias.md) for the method and the commands.",
        "",
    ]
    for run in runs.values():
        d, gg = run["direction"], run["gonen_goldberg"]
        lines += [
            f"## {run['name']}",
            "",
            f"`{run['command']}` — {run['date']}, {run['seconds']:.0f} s. Chain after debiasing: "
            f"`{run['chain_after']}` ({run['pooling']} pooling, {run['attention']} attention).",
            "",
            f"- **Subspace** (10 definitional pairs, words alone, k = {d['k']}): variance explained by components 1–5: "
            + ", ".join(f"{100 * v:.1f}%" for v in d["explained_variance_ratio"][:5])
            + ".",
            f"- Professions furthest on the *woman* side of the direction: {', '.join(d['most_positive'][:6])}; "
            f"on the *man* side: {', '.join(d['most_negative'][:6])}.",
            f"- **DirectBias₁** over {d['neutral_words']} gender-neutral professions: "
            f"{d['direct_bias_before']:.4f} → {d['direct_bias_after']:.1e}.",
            f"- **Gonen & Goldberg**: the {gg['words']} most *he*- and {gg['words']} most *she*-projected words "
            f"(ranked on {gg.get('ranked_by', 'the first principal direction')}) of "
            f"{gg['vocabulary']:,} vocabulary words (gender-specific ones removed) fall into k-means clusters aligned "
            f"with gender at **{100 * gg['alignment_before']:.1f}%** before and **{100 * gg['alignment_after']:.1f}%** "
            f"after debiasing (50% = chance). E.g. {', '.join(gg['examples_positive'][:5])} vs "
            f"{', '.join(gg['examples_negative'][:5])}.",
            "",
        ]
        lines += [
            "| test | mode | targets / attributes | d before | p before | d after | p after |",
            "|---|---|---|---|---|---|---|",
        ]
        after = {(r["mode"], r["test"]): r for r in run["weat"]["after"]}
        for r in run["weat"]["before"]:
            a = after[(r["mode"], r["test"])]
            lines.append(
                f"| {r['test']} | {r['mode'].upper()} | {r['title']} | {r['effect_size']:+.2f} | {_fmt_p(r['p_value'])} | "
                f"{a['effect_size']:+.2f} | {_fmt_p(a['p_value'])} |"
            )
        lines += [
            "",
            "p: one-sided permutation test (* < 0.05); WEAT 6–8 are the gender tests. Exact over all "
            "partitions when there are at most 10⁵ (WEAT 6–10), else 10⁵ seeded random permutations.",
            "",
        ]
        lines += ["| task | metric | before | after | Δ | 95% CI of Δ | p |", "|---|---|---|---|---|---|---|"]
        for q in run["quality"]:
            lines.append(
                f"| {q['task']} | {q['metric']} | {100 * q['before']:.2f} | {100 * q['after']:.2f} | "
                f"{100 * q['delta']:+.2f} | [{100 * q['ci_low']:+.2f}, {100 * q['ci_high']:+.2f}] | {q['p']:.3f} |"
            )
        hurt = [f"{q['task']} ({100 * q['delta']:+.2f})" for q in run["quality"] if q["ci_high"] < 0]
        helped = [f"{q['task']} ({100 * q['delta']:+.2f})" for q in run["quality"] if q["ci_low"] > 0]
        worst = min((q["delta"] for q in run["quality"]), default=0.0)
        weat_after = {r["test"] + "/" + r["mode"]: r for r in run["weat"]["after"]}
        still = [
            k
            for k, r in weat_after.items()
            if r["test"] in GENDER_TESTS and r["p_value"] < 0.05 and r["effect_size"] > 0
        ]
        lines += [
            "",
            "Scores ×100; Δ = after − before with the paired-bootstrap 95% CI (1,000 resamples of the test items, seed 0).",
            "",
            "**Verdict.** Quality: "
            + (
                f"significantly lower on {', '.join(hurt)}, by at most {-100 * worst:.2f} points"
                if hurt
                else "no task is significantly worse (every CI reaches 0 or above)"
            )
            + (f"; significantly higher on {', '.join(helped)}" if helped else "")
            + ". "
            + "Remaining gender bias: "
            + (
                f"still significant (p < 0.05, same direction) on {', '.join(still)}"
                if still
                else "no gender WEAT/SEAT test stays significant in its original direction"
            )
            + f"; the clustering check still recovers gender for {100 * gg['alignment_after']:.1f}% of the most biased words.",
            "",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--pooling", default=None)
    parser.add_argument("--name", default=None, help="the row label (default: the model)")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--tasks", default=",".join(STS + CLASSIFICATION))
    parser.add_argument(
        "--gg-vocab", type=int, default=10_000, help="vocabulary words sampled for the clustering check"
    )
    parser.add_argument("--gg-words", type=int, default=500, help="most biased words per side")
    parser.add_argument("--results", default="runs/bias", help="per-task result JSONs go here")
    parser.add_argument("--json", default=str(REPO / "docs" / "bias_cost.json"))
    parser.add_argument("--out", default=str(REPO / "docs" / "bias_cost.md"))
    parser.add_argument("--png", default=str(REPO / "docs" / "bias_cost.png"))
    parser.add_argument("--render-only", action="store_true", help="rewrite the markdown from --json")
    args = parser.parse_args()
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.name = args.name or args.model
    args.slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in args.name)

    from embedlab.io import write_json

    path = Path(args.json)
    runs = json.loads(path.read_text()) if path.is_file() else {}
    if not args.render_only:
        runs[args.name] = run_model(args)
        write_json(path, runs)
        print(f"wrote {path}")
    if not runs:
        sys.exit("no results to render")
    from embedlab.analysis.bias import WeatResult, plot_effect_sizes

    results = {}
    for run in runs.values():
        for label in ("before", "after"):
            results[f"{run['name']} {label}"] = [WeatResult(**r) for r in run["weat"][label]]
    plot_effect_sizes(results, args.png, title="WEAT/SEAT effect size before and after debiasing (* p < 0.05)")
    body = render(runs) + [f"![effect sizes]({Path(args.png).name})", ""]
    write_markdown(args.out, "The cost of debiasing: bias and quality before and after", body)


if __name__ == "__main__":
    main()
