"""Encode throughput: embedlab vs SentenceTransformer.encode on the same model and texts, same run, and
the quality of reduced precision.

1. Encoder (``--model``, default minilm-l6): sentence-transformers fp32, embedlab fp32, embedlab int8
   (``dtype="int8"``: the backbone's linear layers dynamically quantised), and embedlab bf16 only where
   bf16 is native (on an AVX2 CPU PyTorch emulates it and it runs several times *slower* than fp32).
2. Decoder (``--decoder``, default smollm2-135m): sentence-transformers loading the same converted
   checkpoint (the GGUF converted to an HF directory by embedlab) with last-token pooling and the EOS
   token appended to each text (what embedlab's last-token chain does), vs embedlab fp32 and int8.
3. Quality of int8 against fp32: STS-B test (Spearman) and a named SciFact subsample (nDCG@10).

Each configuration: best of ``--repeats`` within a run; the whole measurement is repeated ``--runs`` times
in the same process (the peer in every run). The table gives the best sentences/s, the ratio of the best
times and the min–max of the per-run ratios, and the minimum cosine against sentence-transformers fp32.

    python bench/encode_throughput.py [--n 2000] [--decoder-n 400] [--runs 3] [--scifact-docs 1000]
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import tempfile
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


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def measure(texts: list[str], peer_name: str, peer, ours: dict, runs: int, repeats: int) -> list[dict[str, tuple[float, float]]]:
    """Per run: configuration -> (seconds, min cosine vs the peer's vectors)."""
    out = []
    for run in range(runs):
        t_peer, ref = best_time(peer, repeats)
        ref = unit(ref)
        row = {peer_name: (t_peer, 1.0)}
        for name, fn in ours.items():
            t, vec = best_time(fn, repeats)
            row[name] = (t, float((unit(vec) * ref).sum(1).min()))
        print(f"run {run + 1}/{runs}: " + ", ".join(f"{k} {len(texts) / v[0]:.1f}/s cos {v[1]:.6f}" for k, v in row.items()), flush=True)
        out.append(row)
    return out


def table(runs: list[dict[str, tuple[float, float]]], n: int) -> list[str]:
    configs = list(runs[0])
    peer = configs[0]
    best_peer = min(r[peer][0] for r in runs)
    lines = ["| configuration | sentences/s (best) | ratio vs ST fp32 (best times) | ratio per run, min–max | min cosine vs ST fp32 |",
             "|---|---|---|---|---|"]
    for name in configs:
        best = min(r[name][0] for r in runs)
        ratios = [r[peer][0] / r[name][0] for r in runs]
        lines.append(f"| {name} | {n / best:,.1f} | {best_peer / best:.2f} | {min(ratios):.2f}–{max(ratios):.2f} | "
                     f"{min(r[name][1] for r in runs):.6f} |")
    return lines


def scifact_subsample(root: Path, docs: int, seed: int = 0) -> Path:
    """Test queries, their relevant documents, and random other documents up to ``docs`` in all (seeded),
    written to a temporary task directory."""
    src = root / "scifact"
    qrels = [line.split("\t") for line in (src / "qrels" / "test.tsv").read_text().splitlines()[1:] if line.strip()]
    relevant = {r[1] for r in qrels}
    corpus = [json.loads(line) for line in gzip.open(src / "corpus.jsonl.gz", "rt", encoding="utf-8")]
    others = [d for d in corpus if str(d["_id"]) not in relevant]
    keep = {str(d["_id"]) for d in corpus if str(d["_id"]) in relevant}
    keep |= {str(d["_id"]) for d in random.Random(seed).sample(others, max(0, docs - len(keep)))}
    out = Path(tempfile.mkdtemp(prefix="scifact-sub-"))
    (out / "qrels").mkdir()
    with gzip.open(out / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
        for d in corpus:
            if str(d["_id"]) in keep:
                f.write(json.dumps(d) + "\n")
    (out / "queries.jsonl").write_text((src / "queries.jsonl").read_text())
    (out / "qrels" / "test.tsv").write_text((src / "qrels" / "test.tsv").read_text())
    return out


def quality(emb, scifact_docs: int) -> tuple[list[str], dict]:
    from embedlab.eval.registry import TaskSpec, builtin_tasks
    from embedlab.eval.runner import run_task
    from embedlab.settings import data_dir

    tasks = [builtin_tasks()["STSBenchmark"]]
    root = data_dir()
    name = f"SciFact-sub{scifact_docs}"
    if root is not None and scifact_docs:
        sub = scifact_subsample(Path(root), scifact_docs)
        tasks.append(TaskSpec(name=name, type="retrieval", root=sub, files={"corpus": "corpus.jsonl.gz", "queries": "queries.jsonl",
                                                                            "qrels": "qrels/test.tsv"}))
    scores: dict = {}
    out = Path(tempfile.mkdtemp())
    for task in tasks:
        for dtype in ("fp32", "int8"):
            start = time.perf_counter()
            r = run_task(task, emb, out / dtype, dtype=dtype)
            scores[(task.name, dtype)] = (r["main_metric"], r["main_score"], time.perf_counter() - start)
            print(task.name, dtype, r["main_metric"], r["main_score"], flush=True)
    lines = ["| task | metric | fp32 | int8 | int8 − fp32 | seconds fp32 / int8 |", "|---|---|---|---|---|---|"]
    for task in tasks:
        m, a, ta = scores[(task.name, "fp32")]
        _, b, tb = scores[(task.name, "int8")]
        lines.append(f"| {task.name} | {m} | {100 * a:.2f} | {100 * b:.2f} | {100 * (b - a):+.2f} | {ta:.1f} / {tb:.1f} |")
    return lines, {"scifact_name": name}


def st_decoder(target: str, emb):
    """SentenceTransformer over embedlab's converted checkpoint: Transformer + last-token pooling (+ Normalize)."""
    from sentence_transformers import SentenceTransformer, models

    # fp32 as embedlab loads it, and plain text: an Instruct checkpoint otherwise gets its chat template applied
    transformer = models.Transformer(target, max_seq_length=emb.max_length, model_kwargs={"dtype": torch.float32},
                                     modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
                                     module_output_name="token_embeddings")
    if transformer.tokenizer.pad_token is None:
        transformer.tokenizer.pad_token = transformer.tokenizer.eos_token
    pooling = models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="lasttoken")
    return SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--decoder", default="smollm2-135m", help="'' to skip the decoder section")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--decoder-n", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--decoder-repeats", type=int, default=1)
    parser.add_argument("--st-batch-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3, help="repeat the whole measurement this many times")
    parser.add_argument("--scifact-docs", type=int, default=1000, help="SciFact subsample size for the quality table (0: skip)")
    parser.add_argument("--out", default="docs/encode_throughput.md", help="markdown table written here")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from embedlab.models import Embedder
    from embedlab.models.backbone import resolve_source
    from embedlab.models.embedder import native_bf16
    from embedlab.settings import data_dir

    texts = load_texts(args.n)
    source = "STS-B/SICK-R" if data_dir() is not None else "demo-corpus"
    print(f"model={args.model} texts={len(texts)} torch threads={torch.get_num_threads()} torch={torch.__version__}")
    emb = Embedder.from_pretrained(args.model)
    target, _ = resolve_source(args.model)
    st = SentenceTransformer(target, device="cpu")
    st.max_seq_length = emb.max_length
    bf16 = native_bf16()
    ours = {"embedlab fp32": lambda: emb.encode(texts), "embedlab int8": lambda: emb.encode(texts, dtype="int8")}
    if bf16:
        ours["embedlab bf16"] = lambda: emb.encode(texts, dtype="bf16")
    st.encode(texts[:64], batch_size=args.st_batch_size)  # warm-up (and the int8 copy is made here, not timed)
    for fn in ours.values():
        fn()
    st_fp32 = "sentence-transformers fp32"
    enc_runs = measure(texts, st_fp32, lambda: st.encode(texts, batch_size=args.st_batch_size, convert_to_numpy=True), ours,
                       args.runs, args.repeats)

    body = ["This machine has no native bf16 (AVX2 only, no AVX-512 BF16/AMX): PyTorch emulates bf16 here and it runs about "
            "8× *slower* than fp32, so bf16 is not measured; the issue's table was measured on an AVX-512 BF16 machine. "
            "Reduced precision here is `--dtype int8` (dynamic int8 quantisation of the backbone's linear layers, "
            "src/embedlab/models/quantize.py)." if not bf16 else "bf16 is native on this machine and is measured.", "",
            f"## Encoder: `{args.model}`", "",
            f"{len(texts):,} {source} sentences (max_length {emb.max_length}), sentence-transformers batch {args.st_batch_size}; "
            f"each configuration best of {args.repeats} per run, {args.runs} runs in the same process.", ""]
    body += table(enc_runs, len(texts))

    if args.decoder:
        dec = Embedder.from_pretrained(args.decoder)
        dtarget, _ = resolve_source(args.decoder)
        dst = st_decoder(dtarget, dec)
        dtexts = texts[: args.decoder_n]
        eos = dec.tokenizer.eos_token if dec.append_eos else ""
        st_texts = [t + eos for t in dtexts]
        douts = {"embedlab fp32": lambda: dec.encode(dtexts), "embedlab int8": lambda: dec.encode(dtexts, dtype="int8")}
        dst.encode(st_texts[:32], batch_size=args.st_batch_size)
        for fn in douts.values():
            fn()
        dec_runs = measure(dtexts, st_fp32, lambda: dst.encode(st_texts, batch_size=args.st_batch_size, convert_to_numpy=True),
                           douts, args.runs, args.decoder_repeats)
        body += ["", f"## Decoder: `{args.decoder}` (last-token pooling, EOS appended)", "",
                 f"The first {len(dtexts):,} of the same sentences; sentence-transformers loads embedlab's converted checkpoint "
                 f"(`{Path(dtarget).name}`) as Transformer + Pooling(lasttoken) + Normalize, each text given with the EOS "
                 f"token `{eos}` appended; batch {args.st_batch_size}; best of {args.decoder_repeats} per run, {args.runs} runs.", ""]
        body += table(dec_runs, len(dtexts))

    qlines, info = quality(emb, args.scifact_docs)
    body += ["", f"## int8 against fp32: quality of `{args.model}`", "",
             "STS-B test (Spearman × 100) and a SciFact subsample (nDCG@10 × 100): `" + info["scifact_name"] + "` = the 300 "
             f"test queries against their relevant abstracts plus random other abstracts, {args.scifact_docs:,} in all "
             "(seed 0; the full corpus has 5,183), scaled down to fit the shared 2-core CPU. Seconds include tokenisation "
             "and scoring.", ""]
    body += qlines
    write_markdown(args.out, "Encode throughput: embedlab vs sentence-transformers", body)


if __name__ == "__main__":
    main()
