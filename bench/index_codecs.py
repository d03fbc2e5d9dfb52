"""Index codecs: memory, quality and speed, against sentence-transformers' quantized search as the peer.

Part 1 — minilm-l6 on SciFact (5,183 abstracts, 300 test queries): for every codec with and without
rescoring, bytes per searched vector, nDCG@10 (and its retention vs exact float search), recall@10
against exact float search, queries per second and build time; plus
``sentence_transformers.quantization.semantic_search_faiss`` (binary and int8, rescoring on) in the
same run.
Part 2 — synthetic 1,000,000 x 384 vectors: build time, QPS and recall@10 vs exact float search.

    python bench/index_codecs.py [--n-synthetic 1000000] [--png docs/index_codecs.png] [--md docs/index_codecs.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

CODECS = [
    "float32",
    "float16",
    "int8",
    "binary",
    "pq48",
    "pq96",
    "ivf64,pq48",
    "hnsw",
    "hnsw,int8",
    "mrl256:int8",
    "mrl128:binary",
]


def recall_at(got: list[list[str]], ref: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(r)) / len(r) for g, r in zip(got, ref)]))


def ndcg_at_10(rankings: list[list[str]], qids: list[str], qrels: dict[str, dict[str, int]]) -> float:
    from embedlab.eval.evaluators import retrieval_metrics

    return float(np.mean([retrieval_metrics(r, qrels[q])["ndcg_at_10"] for r, q in zip(rankings, qids)]))


def timed_search(index, q, k, rescore, repeats=3):
    best, res = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        res = index.search(q, k, rescore=rescore)
        best = min(best, time.perf_counter() - t)
    return res, len(q) / best


def scifact(rows: list[dict], rescore: int) -> None:
    from embedlab.eval.evaluators import load_beir
    from embedlab.eval.registry import builtin_tasks
    from embedlab.eval.runner import EmbeddingCache, make_encoder
    from embedlab.index import VectorIndex
    from embedlab.models import Embedder

    task = builtin_tasks()["SciFact"]
    corpus, queries, qrels = load_beir(task)
    qids = [q for q in qrels if q in queries]
    doc_ids = list(corpus)
    emb = Embedder.from_pretrained("minilm-l6")
    encode = make_encoder(emb, prompts={}, dtype="fp32", cache=EmbeddingCache())
    d = encode([corpus[i] for i in doc_ids], "document")
    q = encode([queries[i] for i in qids], "query")
    exact = VectorIndex.build(d, doc_ids, "float32")
    ref_ids, _ = exact.search(q, 100)
    ref10 = [r[:10] for r in ref_ids]
    base_ndcg = ndcg_at_10(ref_ids, qids, qrels)
    for spec in CODECS:
        t = time.perf_counter()
        index = VectorIndex.build(d, doc_ids, spec, rescore="int8" if "binary" in spec else "float32")
        build = time.perf_counter() - t
        for r in (0, rescore):
            (ids, _), qps = timed_search(index, q, 100 if r == 0 else 10, r)
            nd = ndcg_at_10(ids, qids, qrels)
            rows.append(
                dict(
                    part="SciFact",
                    method=f"embedlab {spec}",
                    rescore=r,
                    bytes=index.codec.bytes_per_vector(index.dim),
                    ndcg=nd,
                    retention=nd / base_ndcg,
                    recall=recall_at([x[:10] for x in ids], ref10),
                    qps=qps,
                    build=build,
                )
            )
    # the peer: sentence-transformers' quantized FAISS search with rescoring
    from sentence_transformers.util.quantization import quantize_embeddings, semantic_search_faiss

    for precision in ("ubinary", "uint8"):  # FAISS in sentence-transformers takes these two
        corpus_q = quantize_embeddings(d, precision=precision, calibration_embeddings=d)
        best, hits = float("inf"), None
        for _ in range(3):
            t = time.perf_counter()
            hits, _ = semantic_search_faiss(
                q,
                corpus_embeddings=corpus_q,
                corpus_precision=precision,
                top_k=10,
                rescore=True,
                rescore_multiplier=rescore,
                calibration_embeddings=d,
                exact=True,
            )
            best = min(best, time.perf_counter() - t)
        ids = [[doc_ids[h["corpus_id"]] for h in row] for row in hits]
        nd = ndcg_at_10(ids, qids, qrels)
        rows.append(
            dict(
                part="SciFact",
                method=f"sentence-transformers {precision}",
                rescore=rescore,
                bytes=d.shape[1] / 8 if precision == "ubinary" else d.shape[1],
                ndcg=nd,
                retention=nd / base_ndcg,
                recall=recall_at(ids, ref10),
                qps=len(q) / best,
                build=float("nan"),
            )
        )


def synthetic(rows: list[dict], n: int, rescore: int) -> None:
    from embedlab.index import VectorIndex

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(2000, 384)).astype(np.float32)
    x = centers[rng.integers(0, 2000, n)] + 0.5 * rng.normal(size=(n, 384)).astype(np.float32)
    q = centers[rng.integers(0, 2000, 200)] + 0.5 * rng.normal(size=(200, 384)).astype(np.float32)
    ids = [str(i) for i in range(n)]
    t = time.perf_counter()
    exact = VectorIndex.build(x, ids, "float32")
    build = time.perf_counter() - t
    (ref, _), float_qps = timed_search(exact, q, 10, 0, repeats=1)
    rows.append(
        dict(
            part=f"synthetic {n:,}",
            method="embedlab float32",
            rescore=0,
            bytes=1536,
            ndcg=float("nan"),
            retention=float("nan"),
            recall=1.0,
            qps=float_qps,
            build=build,
        )
    )
    del exact
    for spec in ("int8", "binary", "pq48", "ivf1024,pq48", "mrl128:binary"):
        t = time.perf_counter()
        index = VectorIndex.build(x, ids, spec, rescore="int8")
        build = time.perf_counter() - t
        for r in (0, rescore):
            (got, _), qps = timed_search(index, q, 10, r, repeats=1)
            rows.append(
                dict(
                    part=f"synthetic {n:,}",
                    method=f"embedlab {spec}",
                    rescore=r,
                    bytes=index.codec.bytes_per_vector(384),
                    ndcg=float("nan"),
                    retention=float("nan"),
                    recall=recall_at(got, ref),
                    qps=qps,
                    build=build,
                )
            )
        del index


def render(rows: list[dict]) -> str:
    lines = [
        "| data | method | rescore r | bytes/vector | nDCG@10 | retention | recall@10 vs float | QPS | build s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = lambda v, fmt: "–" if v != v else format(v, fmt)  # noqa: E731
        lines.append(
            f"| {r['part']} | {r['method']} | {r['rescore']} | {r['bytes']:g} | {f(r['ndcg'], '.4f')} | "
            f"{f(r['retention'], '.1%')} | {r['recall']:.3f} | {r['qps']:,.0f} | {f(r['build'], '.1f')} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        if r["part"] != "SciFact":
            continue
        marker = "o" if r["rescore"] == 0 else "^"
        color = "tab:red" if r["method"].startswith("sentence") else ("tab:blue" if r["rescore"] == 0 else "tab:green")
        ax.scatter(r["bytes"], 100 * r["retention"], marker=marker, color=color)
        ax.annotate(
            r["method"].replace("embedlab ", "").replace("sentence-transformers", "ST")
            + (f" r={r['rescore']}" if r["rescore"] else ""),
            (r["bytes"], 100 * r["retention"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_xlabel("bytes per searched vector (log)")
    ax.set_ylabel("nDCG@10, % of exact float search")
    ax.set_title("minilm-l6 on SciFact: blue = codes only, green = rescored, red = sentence-transformers")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-synthetic", type=int, default=1_000_000)
    parser.add_argument("--rescore", type=int, default=4)
    parser.add_argument("--png", default="docs/index_codecs.png")
    parser.add_argument("--md", default="docs/index_codecs_table.md")
    args = parser.parse_args()
    rows: list[dict] = []
    scifact(rows, args.rescore)
    print(render(rows), flush=True)
    if args.n_synthetic:
        synthetic(rows, args.n_synthetic, args.rescore)
    table = render(rows)
    print(table)
    Path(args.md).write_text(table + "\n")
    plot(rows, Path(args.png))
    sci = {(r["method"], r["rescore"]): r for r in rows if r["part"] == "SciFact"}
    syn = {(r["method"], r["rescore"]): r for r in rows if r["part"] != "SciFact"}
    print("\ntargets:")
    print(
        f"  int8 + rescoring retention        {sci[('embedlab int8', args.rescore)]['retention']:.1%} (target >= 99%)"
    )
    print(
        f"  binary + int8 rescoring retention {sci[('embedlab binary', args.rescore)]['retention']:.1%} (target >= 96%), "
        f"{1536 / sci[('embedlab binary', 0)]['bytes']:.0f}x less memory for the searched codes (target >= 24x)"
    )
    if syn:
        ratio = syn[("embedlab binary", 0)]["qps"] / syn[("embedlab float32", 0)]["qps"]
        print(f"  binary QPS / float flat QPS at {args.n_synthetic:,}: {ratio:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
