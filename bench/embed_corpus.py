"""Corpus embedding throughput (local vs Ray with 1 and 2 actors), Ray's overhead, the tokeniser and Parquet
rates behind a scale-out projection, and the SciFact export parity figures; writes docs/scale.md.

    python bench/embed_corpus.py [--model minilm-l6] [--scifact-docs 300] [--synthetic 2000] [--stage all|throughput|parity|report]

Every job goes through ``embedlab.index.corpus_embed.embed_corpus`` (the code behind ``embedlab
embed-corpus``), writing real shards. Ray runs on a local runtime started by the job itself (num_cpus=2,
a 200 MB object store, OMP_NUM_THREADS=1 per actor). Sizes are kept small so the whole script runs in
under 10 minutes per stage on a 2-core CPU; the issue's 200k-sentence synthetic set is scaled down (``--synthetic``).
The full SciFact shards for the parity stage are kept in ``--work`` and resumed (``--resume``) if a run is cut off.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from _report import REPO, write_markdown
from embedlab.index.corpus_embed import embed_corpus, read_corpora
from embedlab.index.export import export, lance_partitions, search_target
from embedlab.index.shards import build_index_from_shards, write_shard

SCIFACT = REPO.parent / "shared" / "data" / "scifact"
SUBJECTS = "the model|a small dog|my neighbour|the committee|this protein|a red car|the river|our new index".split("|")
VERBS = "finds|reads|measures|crosses|binds|ignores|describes|retrieves|compresses|explains".split("|")
OBJECTS = (
    "the answer|a long document|two cells|the bridge|every query|an old map|the vectors|a hidden pattern|"
    "the main result|three papers"
).split("|")
TAILS = (
    "|quickly|before noon|in the lab|without a server|on one machine|after the storm|for the second time|"
    "with surprising accuracy|near the coast"
).split("|")


def synthetic(n: int, seed: int = 0) -> list[str]:
    """Short sentences of 3-14 words from a small grammar (a mix of lengths, like a sentence corpus)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}".strip()
        if rng.random() < 0.3:
            s += f" and {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        out.append(s + ".")
    return out


def write_jsonl(path: Path, ids: list[str], texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts)), encoding="utf-8")
    return path


def timed_job(model: str, corpus: Path, out: Path, emb, backend: str, actors: int, shard_rows: int) -> float:
    """Seconds for one whole ``embed_corpus`` job into a fresh directory."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    embed_corpus(
        model,
        [corpus],
        out,
        backend=backend,
        actors=actors,
        shard_rows=shard_rows,
        show_progress=False,
        embedder=emb,
        batch_rows=128,
    )
    return time.perf_counter() - start


def throughput(args, emb, work: Path) -> dict:
    """local vs Ray (1, 2 actors) on a SciFact slice and synthetic sentences; Ray's fixed cost; tokeniser and Parquet rates."""
    import torch

    tmp = work / "throughput"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    full = read_corpora([SCIFACT / "corpus.jsonl.gz"])
    sci = write_jsonl(tmp / "scifact.jsonl", full.ids[: args.scifact_docs], full.texts[: args.scifact_docs])
    syn_texts = synthetic(args.synthetic)
    syn = write_jsonl(tmp / "synthetic.jsonl", [f"s{i}" for i in range(len(syn_texts))], syn_texts)
    tiny = write_jsonl(tmp / "tiny.jsonl", [f"t{i}" for i in range(8)], syn_texts[:8])

    # Ray's fixed cost: a job on 8 texts (runtime start, actor start incl. model load, shutdown) minus the local job
    local_tiny = timed_job(args.model, tiny, tmp / "o", emb, "local", 1, 1000)
    overhead = {a: timed_job(args.model, tiny, tmp / "o", emb, "ray", a, 1000) - local_tiny for a in (1, 2)}
    rows = []
    for label, path, n in (
        (f"SciFact (first {args.scifact_docs} docs)", sci, args.scifact_docs),
        ("synthetic sentences", syn, args.synthetic),
    ):
        tokens = sum(emb.tokenize(read_corpora([path]).texts).lengths)
        for backend, actors in (("local", 1), ("ray", 1), ("ray", 2)):
            secs = timed_job(args.model, path, tmp / "j", emb, backend, actors, 2000)
            fixed = overhead[actors] if backend == "ray" else 0.0
            rows.append(
                {
                    "corpus": label,
                    "texts": n,
                    "tokens_per_text": tokens / n,
                    "backend": backend,
                    "actors": actors if backend == "ray" else 0,
                    "threads": torch.get_num_threads(),
                    "seconds": secs,
                    "steady_texts_per_s": n / max(secs - fixed, 1e-9),
                }
            )

    texts = read_corpora([syn]).texts
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    emb.tokenize(texts)
    tok_rate = len(texts) / (time.perf_counter() - start)
    vecs = np.random.default_rng(0).normal(size=(20000, emb.output_dim)).astype(np.float32)
    start = time.perf_counter()
    write_shard(
        tmp, 0, [f"id{i}" for i in range(len(vecs))], vecs, [texts[i % len(texts)] for i in range(len(vecs))], "float32"
    )
    parquet_rate = len(vecs) / (time.perf_counter() - start)
    torch.set_num_threads(threads)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "rows": rows,
        "overhead": overhead,
        "tokenize_per_s": tok_rate,
        "parquet_rows_per_s": parquet_rate,
        "scifact_docs": args.scifact_docs,
        "synthetic": args.synthetic,
    }


def parity(args, emb, work: Path) -> dict:
    """The full SciFact corpus into shards (resumed if a previous run was cut off), every target's top-10 vs exact search."""
    sh = work / "scifact-shards"
    start = time.perf_counter()
    manifest = embed_corpus(
        args.model,
        [SCIFACT / "corpus.jsonl.gz"],
        sh,
        shard_rows=2000,
        embedder=emb,
        show_progress=False,
        resume=sh.exists(),
    )
    secs = time.perf_counter() - start
    index = build_index_from_shards(sh, "float32")
    test_ids = {line.split("\t")[0] for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    queries = [json.loads(x) for x in (SCIFACT / "queries.jsonl").read_text().splitlines()]
    qv = emb.encode([q["text"] for q in queries if q["_id"] in test_ids])
    ref, _ = index.search(qv, 10)
    out = []
    db = work / "targets"
    shutil.rmtree(db, ignore_errors=True)
    for label, uri, exact in (
        ("LanceDB, exact scan", f"lancedb://{db}/lance", True),
        ("LanceDB, IVF_PQ ANN (nprobes 20, no refine)", f"lancedb://{db}/lance", False),
        ("Qdrant local mode", f"qdrant://{db}/qdrant", True),
        ("Milvus Lite (FLAT)", f"milvus://{db}/milvus.db", True),
    ):
        row = {"target": label, "export_s": None, "index": "(the table above)"}
        if exact:
            t0 = time.perf_counter()
            info = export(sh, uri, overwrite=True)
            row.update(export_s=time.perf_counter() - t0, index=info["index"])
        got = search_target(uri, qv, 10, exact=exact)
        row["recall_at_10"] = float(np.mean([len(set(g) & set(r)) / 10 for g, r in zip(got, ref)]))
        out.append(row)
    shutil.rmtree(db, ignore_errors=True)
    return {
        "docs": manifest["corpus"]["rows"],
        "queries": len(qv),
        "embed_s": secs,
        "resumed_shards": sum(1 for _ in manifest["shards"]),
        "targets": out,
    }


def report(args, th: dict, pa: dict | None) -> None:
    rows = th["rows"]
    per_actor = {
        (r["corpus"], r["actors"]): r["steady_texts_per_s"] / r["actors"] for r in rows if r["backend"] == "ray"
    }
    sci_label, syn_label = rows[0]["corpus"], rows[3]["corpus"]
    sci_actor, syn_actor = per_actor[(sci_label, 1)], per_actor[(syn_label, 1)]
    best_actor = max(per_actor.values())
    ov = th["overhead"]
    body = [
        "## Throughput on this machine",
        "",
        f"Model `{args.model}`, fp32, float32 shards of 2,000 rows, texts truncated at the model's 256 tokens. *Wall* is the "
        "whole job as `embed-corpus` runs it (for Ray: starting a local runtime with num_cpus=2, starting the actors, "
        "each loading the model, shutting down). *Steady* subtracts Ray's fixed cost, measured as a job on 8 texts minus "
        f"the local job on the same 8 texts: {ov['1']:.1f} s with 1 actor, {ov['2']:.1f} s with 2.",
        "",
        "| corpus | texts | tokens/text | backend | wall s | texts/s (wall) | texts/s (steady) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        be = (
            f"local ({r['threads']} torch threads)"
            if r["backend"] == "local"
            else f"ray, {r['actors']} actor{'s' if r['actors'] > 1 else ''}"
        )
        body.append(
            f"| {r['corpus']} | {r['texts']:,} | {r['tokens_per_text']:.0f} | {be} | {r['seconds']:.1f} | "
            f"{r['texts'] / r['seconds']:.1f} | {r['steady_texts_per_s']:.1f} |"
        )
    body += [
        "",
        "This machine has 2 cores shared with other jobs, so Ray cannot beat the local backend here: both use the same "
        "two cores, the local one with intra-op threads and no process boundary, Ray with one thread per actor plus its "
        "own processes. Ray pays off when actors sit on other cores and machines. A second actor added nothing here "
        f"(steady {per_actor[(sci_label, 2)] * 2:.1f} vs {per_actor[(sci_label, 1)]:.1f} texts/s on SciFact, "
        f"{per_actor[(syn_label, 2)] * 2:.1f} vs {per_actor[(syn_label, 1)]:.1f} on sentences): the two actors, the driver "
        "and Ray's own processes share the same two cores.",
        "",
        "## Around the model (one core each)",
        "",
        f"- tokenisation (the model's fast tokenizer, synthetic sentences): {th['tokenize_per_s']:,.0f} texts/s",
        f"- Parquet shard writes (`write_shard`, 384-dim float32 with texts, SHA-256 included): {th['parquet_rows_per_s']:,.0f} rows/s",
        "",
        "## Projection to N nodes (a projection, not a measurement)",
        "",
        f"Per-actor steady throughput measured above (1 actor, 1 core): {sci_actor:.1f} texts/s on SciFact abstracts, "
        f"{syn_actor:.1f} texts/s on short sentences. With A actors per node, N nodes give roughly N x A x that rate "
        "while nothing shared saturates. This assumes each actor owns a core (not verifiable on this 2-core machine, "
        "where 2 actors did not scale) and ignores Ray's fixed start-up cost, which is paid once per job:",
        "",
        "| nodes x actors (1 core each) | projected texts/s, SciFact-like | projected texts/s, short sentences |",
        "|---|---:|---:|",
    ]
    for nodes, actors in ((1, 2), (4, 16), (16, 16), (64, 16)):
        body.append(f"| {nodes} x {actors} | {nodes * actors * sci_actor:,.0f} | {nodes * actors * syn_actor:,.0f} |")
    body += [
        "",
        "Where the bottleneck moves: tokenisation runs inside each actor, so it scales with the actors "
        f"({th['tokenize_per_s']:,.0f} short texts/s per core against {syn_actor:.0f} for the model). The shards are assembled and written by the "
        f"driver, one process: at {th['parquet_rows_per_s']:,.0f} rows/s it caps the job once N x A x per-actor rate exceeds it, "
        f"at about {th['parquet_rows_per_s'] / best_actor:,.0f} actors at the best measured per-actor rate. Beyond that, shards "
        "must be written by the actors (Ray Data `write_parquet`) with the manifest built afterwards; that is not implemented "
        "here. The driver also reads and hashes the corpus files once, to plan shards and check ids.",
        "",
    ]
    if pa:
        body += [
            "## Export parity on SciFact",
            "",
            f"The full SciFact corpus ({pa['docs']:,} documents) embedded with `{args.model}` into shards, then the "
            f"{pa['queries']} test queries; recall@10 of each target's top-10 against embedlab's exact float32 search "
            "(`index build --from-embeddings --codec float32`). The shards live in `--work` and are resumed "
            "(`--resume`: finished shards checked against their SHA-256 and kept) when an earlier run was cut off. "
            "LanceDB's ANN figure is its IVF_PQ index as exported (sqrt(n) partitions capped at n/256, the most Lance "
            f"trains, so {lance_partitions(pa['docs'])} here; dims/8 sub-vectors), searched with 20 probes and no refine "
            "step; `search_target(..., refine_factor=10)` trades speed for recall.",
            "",
            "| target | recall@10 | export s | index |",
            "|---|---:|---:|---|",
        ]
        for t in pa["targets"]:
            es = f"{t['export_s']:.1f}" if t["export_s"] is not None else "–"
            body.append(f"| {t['target']} | {t['recall_at_10']:.4f} | {es} | {t['index']} |")
        body.append("")
    else:
        body += ["## Export parity on SciFact", "", "Not measured in this run (`--stage parity`).", ""]
    body += [guide()]
    write_markdown(
        args.out,
        "Corpus embedding at scale: shards, Ray, vector databases",
        body,
        extra={
            "sizes": f"SciFact first {th['scifact_docs']} docs and {th['synthetic']} synthetic sentences for "
            "throughput (the issue's 200k synthetic sentences scaled down to fit 10 minutes on 2 cores); "
            "the full SciFact corpus for parity"
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--scifact-docs", type=int, default=300, help="SciFact documents in the throughput runs")
    parser.add_argument(
        "--synthetic", type=int, default=2000, help="synthetic sentences (the issue asks 200k; scaled down)"
    )
    parser.add_argument(
        "--stage",
        choices=("all", "throughput", "parity", "report"),
        default="all",
        help="run one stage (each under 10 minutes here); results are kept in --work between stages",
    )
    parser.add_argument("--work", default="runs/scale_bench", help="stage results and the SciFact shards (resumable)")
    parser.add_argument("--out", default="docs/scale.md")
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    emb = None
    if args.stage != "report":
        from embedlab.models import Embedder

        emb = Embedder.from_pretrained(args.model)
    if args.stage in ("all", "throughput"):
        (work / "throughput.json").write_text(json.dumps(throughput(args, emb, work), indent=1))
    if args.stage in ("all", "parity"):
        (work / "parity.json").write_text(json.dumps(parity(args, emb, work), indent=1))
    if (work / "throughput.json").is_file():
        th = json.loads((work / "throughput.json").read_text())
        th["overhead"] = {str(k): v for k, v in th["overhead"].items()}
        pa = json.loads((work / "parity.json").read_text()) if (work / "parity.json").is_file() else None
        report(args, th, pa)


GUIDE = """## Commands

```bash
# shards on one machine (Parquet + manifest; --resume skips verified shards)
embedlab embed-corpus minilm-l6 --corpus corpus.jsonl.gz --out shards/ --shard-rows 10000 [--precision float16]
embedlab embed-corpus minilm-l6 --corpus corpus.jsonl.gz --out shards/ --resume
# the backbone in ONNX Runtime (docs/encode_throughput.md): the driver exports or loads the cached graph
# before the first shard; Ray actors on the same machine load it from $EMBEDLAB_CACHE/onnx
embedlab embed-corpus minilm-l6 --corpus corpus.jsonl.gz --out shards/ --runtime onnx

# the same job on a local Ray runtime (2 CPUs) or an existing cluster
embedlab embed-corpus minilm-l6 --corpus corpus.jsonl.gz --out shards/ --backend ray --actors 2
embedlab embed-corpus /shared/models/my-embedder --corpus /shared/corpus/*.jsonl.gz --out /shared/shards \\
    --backend ray --ray-address ray://head-node:10001 --actors 32

# an embedlab index from the shards (no re-encoding), then export
embedlab index build --from-embeddings shards/ --codec hnsw,int8 --out idx/
embedlab export shards/ --to lancedb://vectors.lance          # embedded, no server, IVF_PQ index
embedlab export shards/ --to qdrant://qdrant-data             # Qdrant local mode
embedlab export shards/ --to http://qdrant-host:6333          # a Qdrant server
embedlab export idx/    --to milvus://vectors.db              # Milvus Lite, one file
embedlab export shards/ --to milvus://vectors.db --truncate-texts   # cut texts over 65,535 bytes (counted)
```

Shard precisions (`--precision`, manifest format `embedlab-shards/2`) are `embedlab.vectors.PRECISIONS`, encoded by
the one quantiser (docs/vectors.md), as the server's `precision=` output and the index codecs are:

- `float32`, `float16` as is; `binary` the packed sign bits, read back as `±1/sqrt(dims)`.
- `int8` is FAISS SQ8 (codes − 128) with ONE set of per-dimension ranges for the whole directory, stored in the
  manifest as `int8_ranges` (`{{"lo": [...], "hi": [...]}}`, with `int8_calibration` saying where they came from).
  They are calibrated once per directory, before any shard: the per-dimension min/max of the vectors of the first
  1,024 corpus rows (corpus order, `shards.CALIBRATION_ROWS`), encoded by the driver with the run's model, runtime and
  dtype. Every shard, from the local backend or from Ray actors (the actors return float32 vectors and the driver
  encodes each shard with the manifest's ranges), and every shard a `--resume`d run writes (it reuses the manifest's
  ranges) uses them; values outside a dimension's range clip to its end. Readers (`EmbeddingShards`, so
  `index build --from-embeddings` and `export`) decode with the manifest's ranges.
- Older directories (format `embedlab-shards/1`, whose int8 used one abs-max `scale` per shard) stay readable: a
  manifest with precision `int8`, per-shard `scale` entries and no `int8_ranges` reads as the read-only precision
  `int8-absmax` (`round(127 x / scale)`). Nothing writes it; `--resume` of such a directory as `int8` is refused
  (use a new `--out`). `tests/vectors/test_int8_paths.py` checks that the server, the shards and the index codec give
  the same SQ8 codes and decoded values as a hand-computed FAISS SQ8 reference for the same ranges.

Export notes:

- The model record stored with every export (LanceDB schema metadata `embedlab`, Qdrant collection metadata,
  Milvus collection property `embedlab`) names the source's `precision` (shards: `float32`/`float16`/`int8`/`binary`,
  or `int8-absmax` for a format /1 directory; an index: its `codec` and the rescoring copy's precision) and
  `exported_as: float32`. For int8 shards it carries the manifest's quantisation record under `int8`: the directory's
  per-dimension `int8_ranges` and their `int8_calibration` (format /2), or each shard's `scale` (`int8-absmax`).
- Milvus: only Milvus Lite files (`milvus://FILE.db`) are targets; `milvus://HOST:PORT` (a server, gRPC) or a path
  without `.db` is refused in one line (exit 2). Ids and texts are Milvus VARCHARs of at most 65,535 bytes, checked
  in UTF-8 bytes, as a Milvus server counts them (Milvus Lite counts characters), before anything is written. An id
  over it is refused naming the row (exit 1; ids are keys and are never cut; ids up to 65,535 bytes now work, where
  1,024 characters was the old limit). A text over it is refused the same way unless `--truncate-texts`, which cuts
  it at a character boundary and counts the cut texts in the summary. Texts are never cut silently.
- Milvus Lite's in-process gRPC server does not implement `AllocTimestamp`, which pymilvus calls while it waits for
  the index; grpc logged that as a `NotImplementedError` traceback although the export succeeded. export drops those
  log records (only those).
- LanceDB: Lance trains at most rows // 256 IVF partitions, so export asks for min(isqrt(rows), rows // 256), at
  least 1 (`embedlab.index.export.lance_partitions`), and the number it prints is the number Lance builds (it asked
  sqrt(rows) and printed that, e.g. {asked_700} where Lance trained {built_700} of 700 rows). Tables under 256 rows get no index. Lance's
  own Rust log goes to stderr; export sets `LANCEDB_LOG=error` before importing lancedb unless you set `LANCEDB_LOG`
  yourself.

## Running on an existing Ray cluster

1. Install the same embedlab (with the pinned `ray[data]`) on every node, and put the model and the corpus where
   every node sees them under the same path (a shared filesystem; Ray Data reads the corpus files on the workers).
   Each actor loads the model itself and refuses to work if its fingerprint differs from the driver's.
2. Start the cluster (`ray start --head` on one node, `ray start --address=HEAD:6379` on the others), or use an
   existing one; pass `--ray-address ray://HEAD:10001` (Ray Client) or run the command on the head node with
   `--ray-address auto`. An unreachable address fails at once, naming it.
3. `--actors` sets the pool size (one CPU each, `OMP_NUM_THREADS=1`); the driver writes the shards into `--out`,
   which must be on the driver's disk or a shared one. A killed actor is restarted by Ray Data and its batch retried;
   a killed job is finished with `--resume`.

## Multi-node training with torchrun

embedlab's training already runs under torchrun (data parallel, gloo on CPU, nccl on CUDA; see docs/training.md,
tested there with 2 CPU processes on one machine). On two nodes with 8 GPUs each (not run here):

```bash
# on node 0 and node 1: the same command with --node-rank 0 / 1
torchrun --nnodes 2 --nproc-per-node 8 --node-rank 0 --master-addr node0 --master-port 29500 \\
    -m embedlab.cli train train.yaml
```

The global batch is split across the 16 processes and the representations are all-gathered, so every query
competes against every process's candidates (docs/training.md). Ray Train (`TorchTrainer`) would be the alternative when the cluster is a Ray cluster; it is
not wired in.

## Deviations

- The driver reads every corpus file once (to hash it, check ids and plan shards) and writes the shards; the actors
  only embed. At tens of millions of documents the id set and the driver's single writer are the limits (see the
  projection).
- int8 shards are calibrated on the first 1,024 corpus rows, not a random sample: a corpus sorted by topic may clip
  later rows more than a sample would. Binary shards read back as unit sign vectors.
- Milvus Lite gets a FLAT (exact) index; Qdrant local mode is exact by construction; LanceDB gets IVF_PQ
  (tables under 256 rows stay unindexed). A Milvus server is not an export target.
"""


def guide() -> str:
    """The static part of the page; the LanceDB partition example from the library's own rule."""
    return GUIDE.format(asked_700=math.isqrt(700), built_700=lance_partitions(700))


if __name__ == "__main__":
    main()
