"""``embedlab index build|add|delete|info``, ``search``, ``embed-corpus`` and ``export``: corpora to vectors,
indexes and vector databases."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from embedlab.cli._common import (
    DEFAULT_MODEL,
    FLOAT32,
    Attention,
    AttentionOpt,
    DType,
    DTypeOpt,
    OverwriteOpt,
    PoolingOpt,
    Precision,
    Runtime,
    RuntimeOpt,
    err,
    input_file,
    load_embedder,
    on_interrupt,
    out,
    output_folder,
    read_texts,
    show_mapping,
    show_table,
)

index_app = typer.Typer(no_args_is_help=True, help="Build and maintain compressed vector indexes.")


def _index_model(emb: Any, name: str, query_prompt: str | None, document_prompt: str | None) -> dict[str, Any]:
    from embedlab.index.shards import model_record

    return model_record(emb, name, query_prompt, document_prompt)


def _model_for_index(index: Any) -> Any:
    from embedlab.errors import EmbedlabError

    m = index.model
    if not m.get("name"):
        raise EmbedlabError("this index records no model: search it from Python with your own query vectors")
    emb = load_embedder(m["name"], m.get("pooling"), Attention(m["attention"]) if m.get("attention") else None)
    index.check_model(_index_model(emb, m["name"], m.get("query_prompt"), m.get("document_prompt")))
    return emb


def _load_index(directory: Path) -> Any:
    """An index directory; a shard folder (from embed-corpus) or a missing one says what to run instead."""
    from embedlab.errors import IndexStoreError
    from embedlab.index import VectorIndex

    directory = Path(directory)
    if not directory.is_dir():
        raise IndexStoreError(f"no index at {directory}: build one with `embedlab index build --out {directory} ...`")
    manifest = directory / "manifest.json"
    if manifest.is_file() and any(directory.glob("shard-*.parquet")):
        raise IndexStoreError(
            f"{directory} is a shard folder from embed-corpus, not an index: build one with "
            f"`embedlab index build --from-embeddings {directory} --out INDEX_DIR`, then search INDEX_DIR"
        )
    return VectorIndex.load(directory)


@index_app.command("build")
def index_build(
    out_dir: Annotated[Path, typer.Option("--out", help="the index folder")],
    corpus: Annotated[Path | None, typer.Option(help="JSONL with id and text, or a BEIR corpus.jsonl[.gz]")] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help=f"default {DEFAULT_MODEL}, or the shards' model")
    ] = None,
    codec: Annotated[
        str | None,
        typer.Option(
            help="dense: float32|float16|int8|binary|pq<M>|ivf<N>,pq<M>|hnsw[,int8], optional mrl<D>: prefix "
            "(default int8); bm25: a BM25 index of the texts, no model; a sparse model's index is exact (sparse)"
        ),
    ] = None,
    hybrid: Annotated[
        str | None,
        typer.Option(help="also a lexical part: bm25, or a sparse model (e.g. a SPLADE folder); searched fused"),
    ] = None,
    fusion_method: Annotated[
        str | None, typer.Option("--fusion", help="a hybrid's default fusion: rrf (k 60, default) or convex")
    ] = None,
    fusion_weight: Annotated[
        float | None, typer.Option("--fusion-weight", help="convex: the dense part's weight, 0 < W < 1")
    ] = None,
    from_embeddings: Annotated[
        Path | None, typer.Option("--from-embeddings", help="a shard directory from embed-corpus (no re-encoding)")
    ] = None,
    rescore_copy: Annotated[
        str, typer.Option("--rescore-copy", help="float32 or int8 copy kept on disk for rescoring")
    ] = "float32",
    pooling: PoolingOpt = None,
    attention: AttentionOpt = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    dtype: DTypeOpt = DType.fp32,
    runtime: RuntimeOpt = Runtime.torch,
    overwrite: OverwriteOpt = False,
) -> None:
    """Embed a corpus and write a compressed index directory (atomically)."""
    from embedlab.corpus import read_documents as read_corpus
    from embedlab.errors import UsageError
    from embedlab.index import VectorIndex, parse_codec
    from embedlab.io import allow_overwrite

    if codec == "bm25" and (hybrid or model or pooling or from_embeddings):
        raise UsageError("--codec bm25 indexes the texts alone: give --corpus, without --model, --pooling or --hybrid")
    if codec not in (None, "bm25", "sparse"):
        parse_codec(codec)  # fail on a bad codec before encoding anything
    if (fusion_method or fusion_weight is not None) and not hybrid:
        raise UsageError("--fusion and --fusion-weight set a hybrid index's default: give --hybrid bm25|SPARSE_MODEL")
    if (corpus is None) == (from_embeddings is None):
        raise UsageError("give --corpus FILE or --from-embeddings DIR" + (", not both" if corpus is not None else ""))
    input_file(corpus, "--corpus")
    if from_embeddings is not None:
        from embedlab.index.shards import read_manifest

        read_manifest(from_embeddings)  # a folder that is no shard folder fails here, before any model loads
    output_folder(out_dir, overwrite)
    if from_embeddings is not None:
        from embedlab.index.shards import build_index_from_shards

        if hybrid or codec in ("bm25", "sparse"):
            raise UsageError("--from-embeddings builds a dense index: --hybrid and --codec bm25|sparse need --corpus")
        index = build_index_from_shards(
            from_embeddings,
            codec or "int8",
            rescore=rescore_copy,
            model=model,
            query_prompt=query_prompt,
            load_model=lambda name, pool, att: load_embedder(name, pool, Attention(att) if att else None),
        )
        with allow_overwrite(overwrite):
            index.save(out_dir)
        err.print(f"indexed {len(index)} documents from {from_embeddings} with {codec} -> {out_dir}", highlight=False)
        return
    from embedlab.index import hybrid as hybrid_index

    ids, texts = read_corpus(corpus)
    if codec == "bm25":
        from embedlab.index.lexical import BM25Index

        with err.status("building the BM25 index…"):
            bm25 = BM25Index().build(ids, texts)
            with allow_overwrite(overwrite):
                bm25.save(out_dir)
        err.print(f"indexed {len(bm25)} documents with BM25 ({bm25.describe()}) -> {out_dir}", highlight=False)
        return
    model = model or DEFAULT_MODEL
    emb = load_embedder(model, pooling, attention)
    encode = {"prompt_name": document_prompt, "dtype": dtype.value, "show_progress": True, "runtime": runtime.value}
    if emb.output_kind == "sparse":
        if codec not in (None, "sparse") or hybrid:
            raise UsageError(
                f"{model} gives sparse vectors: its index is exact (--codec sparse); for a hybrid, give the dense "
                f"model as --model and this one as --hybrid"
            )
        index = hybrid_index.build_sparse(emb, model, ids, texts, query_prompt, document_prompt, **encode)
        with allow_overwrite(overwrite):
            index.save(out_dir)
        info = index.info()
        err.print(
            f"indexed {info['documents']} documents, sparse, {info['mean_active_dims']:.0f} active dims per document "
            f"-> {out_dir}",
            highlight=False,
        )
        return
    if codec == "sparse":
        raise UsageError(f"--codec sparse needs a sparse model (e.g. --pooling splade); {model} gives dense vectors")
    codec = codec or "int8"
    lexical = None
    if hybrid is not None:  # the lexical part first: a bad --hybrid fails before the long dense pass
        lexical = hybrid_index.build_lexical(hybrid, ids, texts, load_embedder, **encode)
    vectors = emb.encode(texts, **encode)
    with err.status("building the index…"):
        index = VectorIndex.build(
            vectors,
            ids,
            codec,
            texts=texts,
            rescore=rescore_copy,
            model=_index_model(emb, model, query_prompt, document_prompt),
        )
        with allow_overwrite(overwrite):
            if lexical is None:
                index.save(out_dir)
            else:
                defaults = {"method": fusion_method or "rrf"}
                if fusion_weight is not None:
                    defaults["weight"] = fusion_weight
                hybrid_index.save_hybrid(out_dir, index, lexical, defaults)
    part = f" + {hybrid} (hybrid, {fusion_method or 'rrf'})" if lexical is not None else ""
    err.print(
        f"indexed {len(index)} documents with {codec} ({index.codec.bytes_per_vector(index.dim):g} bytes/vector){part} "
        f"-> {out_dir}",
        highlight=False,
    )


def _load_model(record: dict[str, Any]) -> Any:
    """The query encoder an index's model record names (the hybrid and sparse indexes' loader)."""
    return load_embedder(
        record["name"], record.get("pooling"), Attention(record["attention"]) if record.get("attention") else None
    )


def _retriever(directory: Path) -> Any:
    from embedlab.index.hybrid import index_kind, open_retriever

    if index_kind(directory) == "dense":
        _load_index(directory)  # a shard folder says what to run instead
    return open_retriever(directory, _load_model)


def _not_dense(directory: Path, verb: str) -> bool:
    """Add/delete on a sparse index; a BM25 index or a hybrid cannot be changed in place (one line)."""
    from embedlab.errors import UsageError
    from embedlab.index.hybrid import index_kind

    kind = index_kind(directory)
    if kind in ("bm25", "hybrid"):
        raise UsageError(
            f"a {kind} index cannot {verb} documents in place (BM25's statistics are corpus-wide): "
            "rebuild it with `embedlab index build` over the whole corpus"
        )
    return kind == "sparse"


@index_app.command("add")
def index_add(
    directory: Annotated[Path, typer.Argument()],
    corpus: Annotated[Path, typer.Option()],
    dtype: DTypeOpt = DType.fp32,
    runtime: RuntimeOpt = Runtime.torch,
) -> None:
    """Embed and append documents to an index."""
    from embedlab.corpus import read_documents as read_corpus

    input_file(corpus, "--corpus")
    if _not_dense(directory, "add"):
        retriever = _retriever(directory)
        ids, texts = read_corpus(corpus)
        docs = retriever.model.encode(
            texts, prompt_name=retriever.index.model.get("document_prompt"), dtype=dtype.value, output="sparse"
        )
        retriever.index.add(ids, docs)
        retriever.index.save(directory)
        err.print(f"added {len(ids)} documents; the index holds {len(retriever.index)}")
        return
    index = _load_index(directory)
    ids, texts = read_corpus(corpus)
    emb = _model_for_index(index)
    vectors = emb.encode(
        texts,
        prompt_name=index.model.get("document_prompt"),
        dtype=dtype.value,
        show_progress=True,
        runtime=runtime.value,
    )
    index.add(vectors, ids, texts if index.texts is not None else None)
    index.save(directory)
    err.print(f"added {len(ids)} documents; the index holds {len(index)}")


@index_app.command("delete")
def index_delete(
    directory: Annotated[Path, typer.Argument()], ids: Annotated[Path, typer.Option(help="a file with one id per line")]
) -> None:
    """Delete documents by id."""
    input_file(ids, "--ids")
    if _not_dense(directory, "delete"):
        from embedlab.index.sparse import SparseIndex

        index: Any = SparseIndex.load(directory)
    else:
        index = _load_index(directory)
    removed = index.delete([line.strip() for line in read_texts(ids) if line.strip()])
    index.save(directory)
    err.print(f"deleted {removed} documents; the index holds {len(index)}")


@index_app.command("info")
def index_info(directory: Annotated[Path, typer.Argument()]) -> None:
    """The manifest of an index: kind, codec, count, sizes, model (a sparse index: its query latency too)."""
    from embedlab.index.hybrid import index_kind, open_retriever

    kind = index_kind(directory)
    if kind == "dense":
        show_mapping(_load_index(directory).manifest(), title=str(directory))
        return
    show_mapping(open_retriever(directory, _load_model).info(), title=f"{directory} ({kind})")


def search(
    directory: Annotated[Path, typer.Argument(help="an index directory")],
    query: Annotated[str | None, typer.Argument()] = None,
    queries: Annotated[str | None, typer.Option("--queries", help="a file of queries (one per line or JSONL)")] = None,
    k: Annotated[int, typer.Option("-k", min=1)] = 10,
    rescore: Annotated[
        int, typer.Option("--rescore", min=0, help="oversampling factor r: rescore k*r candidates (0: off)")
    ] = 4,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    fusion_method: Annotated[
        str | None, typer.Option("--fusion", help="a hybrid index: rrf (k 60) or convex (default: the index's)")
    ] = None,
    fusion_weight: Annotated[
        float | None, typer.Option("--fusion-weight", help="convex: the dense part's weight, 0 < W < 1")
    ] = None,
) -> None:
    """Search an index (dense, sparse, BM25 or hybrid) with one query or a file of queries."""
    from embedlab.errors import UsageError
    from embedlab.index.fusion import METHODS
    from embedlab.validation import choice

    if (query is None) == (queries is None):
        raise UsageError("give one query, or --queries FILE")
    if fusion_method is not None:
        choice("--fusion", fusion_method, METHODS)
    texts = (
        [query] if query is not None else read_texts(queries, stdin_text=sys.stdin.read() if queries == "-" else None)
    )
    if any(not t.strip() for t in texts):
        raise UsageError("a query is empty: give some text to search for")
    retriever = _retriever(directory)
    retriever.rescore = rescore
    hits = retriever.search(texts, k, fusion_method=fusion_method, weight=fusion_weight)
    ids, scores = [h[0] for h in hits], [h[1] for h in hits]
    dense = retriever.parts.get("dense", retriever) if retriever.kind in ("dense", "hybrid") else None
    texts_of = getattr(dense.index, "texts", None) if dense is not None else None
    docs = {i: t for i, t in zip(dense.index.ids, texts_of)} if dense is not None and texts_of is not None else {}
    if as_json:
        for q, row, sc in zip(texts, ids, scores):
            hits = [
                {"id": d, "score": round(float(s), 6), **({"text": docs[d]} if docs else {})} for d, s in zip(row, sc)
            ]
            out.print_json(json.dumps({"query": q, "hits": hits}))
        return
    for q, row, sc in zip(texts, ids, scores):
        show_table(
            [(str(rank), d, f"{s:.4f}", (docs.get(d, "") or "")[:100]) for rank, (d, s) in enumerate(zip(row, sc), 1)],
            ("rank", "id", "score", "text"),
            title=q,
        )


class Backend(str, Enum):
    local = "local"
    ray = "ray"


def embed_corpus_cmd(
    model: Annotated[str, typer.Argument(help="alias, directory or hub id (Ray workers load it themselves)")],
    corpus: Annotated[
        list[Path], typer.Option("--corpus", help="JSONL (id, text), BEIR corpus.jsonl[.gz] or Parquet; repeatable")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="the shard directory")],
    backend: Annotated[Backend, typer.Option()] = Backend.local,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="host:port or ray://host:port of a running cluster; default: a local runtime"
        ),
    ] = None,
    actors: Annotated[int, typer.Option(min=1, help="Ray actors, each loading the model once")] = 1,
    shard_rows: Annotated[int, typer.Option("--shard-rows", min=1)] = 10_000,
    dtype: DTypeOpt = DType.fp32,
    runtime: RuntimeOpt = Runtime.torch,
    precision: Annotated[Precision, typer.Option(help="how vectors are stored in the shards")] = FLOAT32,  # type: ignore[assignment]
    resume: Annotated[
        bool,
        typer.Option("--resume", help="skip finished shards (checksums verified); refuse a changed model or corpus"),
    ] = False,
    no_texts: Annotated[bool, typer.Option("--no-texts", help="do not store the texts in the shards")] = False,
    prompt: Annotated[str | None, typer.Option("--prompt", help="the model's document prompt name")] = None,
    query_prompt: Annotated[
        str | None, typer.Option("--query-prompt", help="recorded for searches of indexes built from these shards")
    ] = None,
    pooling: PoolingOpt = None,
    attention: AttentionOpt = None,
) -> None:
    """Embed a corpus into Parquet shards with a manifest (local, or a Ray Data actor pool)."""
    from embedlab.index.corpus_embed import embed_corpus, run_summary

    for path in corpus:
        input_file(path, "--corpus")
    output_folder(out_dir, overwrite=True)  # the path only: embed_corpus refuses a non-empty folder without --resume
    emb = load_embedder(model, pooling, attention)  # the driver needs the fingerprint on both backends
    with on_interrupt(f"finished shards are kept in {out_dir}; rerun the same command with --resume to continue"):
        manifest = embed_corpus(
            model,
            corpus,
            out_dir,
            backend=backend.value,
            ray_address=ray_address,
            actors=actors,
            shard_rows=shard_rows,
            dtype=dtype.value,
            runtime=runtime.value,
            precision=precision.value,
            resume=resume,
            store_texts=not no_texts,
            prompt=prompt,
            query_prompt=query_prompt,
            pooling=pooling,
            attention=attention.value if attention else None,
            embedder=emb,
            show_progress=True,
        )
    err.print(run_summary(manifest, out_dir), highlight=False)


def export_cmd(
    directory: Annotated[Path, typer.Argument(help="a shard directory (embed-corpus) or an embedlab index")],
    to: Annotated[
        str, typer.Option("--to", help="lancedb://PATH | qdrant://PATH | http://HOST:PORT (Qdrant) | milvus://FILE.db")
    ],
    collection: Annotated[str, typer.Option(help="table / collection name")] = "embedlab",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing table / collection")] = False,
    no_ann: Annotated[bool, typer.Option("--no-ann", help="LanceDB: skip building the ANN index")] = False,
    truncate_texts: Annotated[
        bool,
        typer.Option(
            "--truncate-texts",
            help="Milvus: cut texts over its 65,535-byte VARCHAR limit (counted in the summary) instead of refusing",
        ),
    ] = False,
) -> None:
    """Export vectors, ids, texts and the model record to a vector database."""
    from embedlab.errors import UsageError
    from embedlab.index.export import export, parse_target
    from embedlab.io import check_output

    target = parse_target(to)
    if target.kind != "qdrant-server":
        scheme = to.split("://", 1)[0] if "://" in to else "milvus"
        if not target.location.strip():
            raise UsageError(
                f"--to {to} names no path: give {scheme}://PATH (a new or existing database folder or file)"
            )
        check_output(target.location, folder=target.kind != "milvus-lite", overwrite=True, flag="--to")
    input_file(directory, "DIRECTORY")
    with err.status(f"exporting to {to}…"):
        result = export(
            directory, to, collection=collection, overwrite=overwrite, ann=not no_ann, truncate_texts=truncate_texts
        )
    err.print(
        f"exported {result['rows']} rows ({result['source']}) to {result['target']} collection "
        f"{result['collection']!r}; index: {result['index']}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command()(search)
    app.command("embed-corpus")(embed_corpus_cmd)
    app.command("export")(export_cmd)
