"""The six task types, following MTEB 1.12's protocols (the version behind the reference scores).

Each evaluator takes a task spec and ``encode(texts, role) -> np.ndarray`` and returns
``(scores, per_example)``. ``per_example`` keeps what a paired comparison needs:

* ``{"kind": "mean", "ids": [...], "values": [...]}`` — the score is the mean of per-item values
  (nDCG@10 per query, AP per reranking query, correctness per classified item);
* ``{"kind": "spearman", "ids", "pred", "gold"}`` — STS: recompute Spearman on resampled pairs;
* ``{"kind": "ap", "ids", "pred", "gold"}`` — pair classification: recompute AP on resampled pairs;
* ``{"kind": "repeats", "values"}`` — clustering: one v-measure per repetition.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.cluster import MiniBatchKMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, v_measure_score
from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances
from sklearn.model_selection import StratifiedKFold

from embedlab.corpus import read_documents
from embedlab.errors import InputError
from embedlab.eval.registry import TaskSpec
from embedlab.readers import DatasetError, read_jsonl, read_tsv

Encode = Callable[[list[str], str], np.ndarray]
SEED = 42


# ---------------------------------------------------------------------------------------------
# STS
# ---------------------------------------------------------------------------------------------
def evaluate_sts(
    task: TaskSpec, encode: Encode, rng: np.random.RandomState | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    rows = read_tsv(task.path(task.split), ("sentence1", "sentence2", "score"))
    lo, hi = task.score_range
    try:
        gold = np.array([(float(r["score"]) - lo) / (hi - lo) for r in rows])
    except ValueError as exc:
        raise DatasetError(f"dataset file corrupt: {task.path(task.split)} has a non-numeric score ({exc})") from None
    a = encode([r["sentence1"] for r in rows], "query")
    b = encode([r["sentence2"] for r in rows], "query")
    cos = 1 - paired_cosine_distances(a, b)
    man = -paired_manhattan_distances(a, b)
    euc = -paired_euclidean_distances(a, b)
    dot = (a * b).sum(1)
    scores = {
        "cosine_spearman": spearmanr(gold, cos).statistic,
        "cosine_pearson": pearsonr(gold, cos).statistic,
        "manhattan_spearman": spearmanr(gold, man).statistic,
        "manhattan_pearson": pearsonr(gold, man).statistic,
        "euclidean_spearman": spearmanr(gold, euc).statistic,
        "euclidean_pearson": pearsonr(gold, euc).statistic,
        "dot_spearman": spearmanr(gold, dot).statistic,
        "dot_pearson": pearsonr(gold, dot).statistic,
    }
    per = {"kind": "spearman", "ids": list(range(len(rows))), "pred": cos.tolist(), "gold": gold.tolist()}
    return {k: float(v) for k, v in scores.items()}, per


# ---------------------------------------------------------------------------------------------
# Retrieval (BEIR layout, exact search, trec_eval-style metrics)
# ---------------------------------------------------------------------------------------------
K_VALUES = (1, 3, 5, 10, 20, 100, 1000)


def load_beir(task: TaskSpec) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """corpus id -> text (the one corpus reader: :func:`embedlab.corpus.read_documents`, its title join),
    query id -> text, query id -> {corpus id: relevance}."""
    try:
        ids, texts = read_documents(task.path("corpus"))
    except DatasetError:
        raise
    except InputError as exc:  # a corpus that cannot be read is a dataset that cannot be used
        raise DatasetError(str(exc)) from None
    corpus = dict(zip(ids, texts))
    queries = {str(q["_id"]): q["text"] for q in read_jsonl(task.path("queries"))}
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for row in read_tsv(task.path("qrels"), ("query-id", "corpus-id", "score")):
        qrels[row["query-id"]][row["corpus-id"]] = int(row["score"])
    return corpus, queries, dict(qrels)


def rank_documents(scores: np.ndarray, doc_ids: list[str], k: int) -> list[str]:
    """Top-k doc ids by score, ties broken by doc id descending (pytrec_eval's order), also at the cut:
    every document tied with the k-th score is kept before sorting, so which of them make the top k is
    decided by id, never by ``np.partition``'s arbitrary choice."""
    k = min(k, len(doc_ids))
    if k <= 0:
        return []
    if k < len(doc_ids):
        cut = np.partition(-scores, k - 1)[k - 1]  # minus the k-th largest score
        top = np.flatnonzero(-scores <= cut)  # every document at or above it, ties at the cut included
    else:
        top = np.arange(len(doc_ids))
    ordered = sorted(top.tolist(), key=lambda i: doc_ids[i], reverse=True)
    ordered.sort(key=lambda i: -scores[i])
    return [doc_ids[i] for i in ordered[:k]]


def retrieval_metrics(ranking: list[str], relevant: dict[str, int]) -> dict[str, float]:
    """nDCG@k, MAP@k, recall@k, precision@k, MRR@k for one query (trec_eval definitions)."""
    out: dict[str, float] = {}
    rels = [relevant.get(d, 0) for d in ranking]
    ideal = sorted((r for r in relevant.values() if r > 0), reverse=True)
    n_rel = len(ideal)
    for k in K_VALUES:
        gains = rels[:k]
        dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains) if g > 0)
        idcg = sum(g / np.log2(i + 2) for i, g in enumerate(ideal[:k]))
        out[f"ndcg_at_{k}"] = dcg / idcg if idcg > 0 else 0.0
        hits, ap = 0, 0.0
        for i, g in enumerate(gains):
            if g > 0:
                hits += 1
                ap += hits / (i + 1)
        out[f"map_at_{k}"] = ap / n_rel if n_rel else 0.0
        out[f"recall_at_{k}"] = hits / n_rel if n_rel else 0.0
        out[f"precision_at_{k}"] = hits / k
        first = next((i for i, g in enumerate(gains) if g > 0), None)
        out[f"mrr_at_{k}"] = 1.0 / (first + 1) if first is not None else 0.0
    return out


#: ``retrieve(doc_ids, doc_texts, query_texts, depth)`` -> one ranked list of doc ids per query (best first,
#: at most ``depth``): what any retriever (dense, BM25, sparse, hybrid) gives :func:`evaluate_retriever`
Retrieve = Callable[[list[str], list[str], list[str], int], list[list[str]]]


def _retrieval_data(
    task: TaskSpec,
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]], list[str]]:
    """:func:`load_beir` plus the evaluated query ids (those with qrels and a text, in qrels order)."""
    corpus, queries, qrels = load_beir(task)
    qids = [q for q in qrels if q in queries]
    if not qids:
        raise DatasetError(f"dataset file corrupt: {task.path('qrels')} names no query of {task.path('queries')}")
    return corpus, queries, qrels, qids


def ranking_scores(
    task: TaskSpec, qids: list[str], rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]]
) -> tuple[dict[str, float], dict[str, Any]]:
    """THE metric loop of retrieval, for a ranking made by any retriever: per query, its ranking (a document
    whose id equals the query's dropped when ``task.ignore_identical_ids``, MTEB v1) cut to
    ``max(K_VALUES)`` and scored by :func:`retrieval_metrics`; the scores are the means over ``qids``, and
    the per-example record is nDCG@10 per query (what the significance tests resample)."""
    per_query: dict[str, dict[str, float]] = {}
    for qid in qids:
        ranking = [x for x in rankings[qid] if not (task.ignore_identical_ids and x == qid)]
        per_query[qid] = retrieval_metrics(ranking[: max(K_VALUES)], qrels[qid])
    keys = next(iter(per_query.values())).keys()
    scores = {k: float(np.mean([m[k] for m in per_query.values()])) for k in keys}
    per = {"kind": "mean", "metric": "ndcg_at_10", "ids": qids, "values": [per_query[i]["ndcg_at_10"] for i in qids]}
    return scores, per


def evaluate_retrieval(
    task: TaskSpec, encode: Encode, rng: np.random.RandomState | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """Dense retrieval: exact cosine search over the encoded corpus, scored by :func:`ranking_scores`."""
    corpus, queries, qrels, qids = _retrieval_data(task)
    doc_ids = list(corpus)
    d = encode([corpus[i] for i in doc_ids], "document")
    q = encode([queries[i] for i in qids], "query")
    d = d / np.linalg.norm(d, axis=1, keepdims=True).clip(1e-12)
    q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)
    position = {doc: i for i, doc in enumerate(doc_ids)}
    rankings: dict[str, list[str]] = {}
    for start in range(0, len(qids), 256):
        sims = q[start : start + 256] @ d.T
        for row, qid in enumerate(qids[start : start + 256]):
            s = sims[row].astype(np.float64)
            if task.ignore_identical_ids and qid in position:
                s[position[qid]] = -np.inf  # MTEB v1: a document whose id equals the query's is dropped
            rankings[qid] = rank_documents(s, doc_ids, max(K_VALUES) + 1)
    return ranking_scores(task, qids, rankings, qrels)


#: ``search(doc_ids, doc_texts, query_texts, depth)`` -> per query, its hits best first as ``(doc ids,
#: scores)`` (at most ``depth``): a :data:`Retrieve` that also gives the scores, which fusion needs
Search = Callable[[list[str], list[str], list[str], int], list[tuple[list[str], list[float]]]]


def ranked_ids(search: Search) -> Retrieve:
    """The :data:`Retrieve` of a :data:`Search` (its hits' ids, scores dropped)."""

    def retrieve(doc_ids: list[str], doc_texts: list[str], query_texts: list[str], depth: int) -> list[list[str]]:
        return [ids for ids, _ in search(doc_ids, doc_texts, query_texts, depth)]

    return retrieve


def dense_search(encode: Encode) -> Search:
    """Exact cosine search over the encoded corpus (``encode(texts, role)`` -> (n, d)), ranked by
    :func:`rank_documents` as :func:`evaluate_retrieval` ranks (the hybrid's dense part)."""

    def search(doc_ids: list[str], doc_texts: list[str], query_texts: list[str], depth: int):
        d = encode(doc_texts, "document")
        q = encode(query_texts, "query")
        d = d / np.linalg.norm(d, axis=1, keepdims=True).clip(1e-12)
        q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)
        position = {doc: i for i, doc in enumerate(doc_ids)}
        out: list[tuple[list[str], list[float]]] = []
        for start in range(0, len(query_texts), 256):
            sims = q[start : start + 256] @ d.T
            for row in range(sims.shape[0]):
                s = sims[row].astype(np.float64)
                ids = rank_documents(s, doc_ids, depth)
                out.append((ids, [float(s[position[i]]) for i in ids]))
        return out

    return search


#: ``encode_sparse(texts, role)`` -> :class:`~embedlab.vectors.SparseEmbeddings` (one row per text)
SparseEncode = Callable[[list[str], str], Any]


def exact_sparse_hits(docs: Any, queries: Any, doc_ids: list[str], k: int) -> list[tuple[list[str], list[float]]]:
    """Exact dot-product search of sparse weights (two :class:`~embedlab.vectors.SparseEmbeddings` over one
    vocabulary): per query, its top-``k`` documents among those sharing at least one active dimension with
    it (a document sharing none is never a hit; an empty query has none), by score descending, ties by doc
    id descending (:func:`rank_documents`). The semantics of :meth:`embedlab.index.sparse.SparseIndex.search`,
    which the evaluation layer may not import (docs/architecture.md), with the same float64 sums in the same
    order (tested equal to it); queries are scored in blocks of about 4 M document scores."""
    import scipy.sparse as sp

    if docs.vocab_size != queries.vocab_size:
        raise InputError(
            f"the queries' vocabulary has {queries.vocab_size} entries, the documents' {docs.vocab_size}: "
            "they come from another model or tokenizer"
        )

    def csr(e: Any, ones: bool = False) -> Any:
        values = np.ones(len(e.values)) if ones else e.values.astype(np.float64)
        return sp.csr_matrix((values, e.indices, e.indptr), shape=(len(e), e.vocab_size))

    d_t, d_hit = csr(docs).T.tocsr(), csr(docs, ones=True).T.tocsr()  # a row per vocabulary entry: its postings
    q, q_hit = csr(queries), csr(queries, ones=True)
    block = max(1, (1 << 22) // max(1, len(doc_ids)))
    out: list[tuple[list[str], list[float]]] = []
    for start in range(0, len(queries), block):
        scores = (q[start : start + block] @ d_t).toarray()
        shared = (q_hit[start : start + block] @ d_hit).tocsr()  # counts of shared dimensions: never cancel
        for row in range(scores.shape[0]):
            hits = shared.indices[shared.indptr[row] : shared.indptr[row + 1]]
            s = scores[row, hits]
            ids = rank_documents(s, [doc_ids[h] for h in hits], k)
            score_of = dict(zip((doc_ids[h] for h in hits), s.tolist()))
            out.append((ids, [score_of[i] for i in ids]))
    return out


def sparse_search(encode_sparse: SparseEncode) -> Search:
    """Exact dot-product search of a sparse model (SPLADE, DupMAE): documents and queries encoded to sparse
    weights, searched by :func:`exact_sparse_hits` to ``depth`` (a document sharing no active dimension with a
    query is not a hit of it, as in an inverted index)."""

    def search(doc_ids: list[str], doc_texts: list[str], query_texts: list[str], depth: int):
        docs = encode_sparse(doc_texts, "document")
        return exact_sparse_hits(docs, encode_sparse(query_texts, "query"), doc_ids, depth)

    return search


def evaluate_sparse_retrieval(task: TaskSpec, encode_sparse: SparseEncode) -> tuple[dict[str, float], dict[str, Any]]:
    """Sparse retrieval: :func:`sparse_search` (dot products, never cosine) to the dense path's depth,
    scored by :func:`ranking_scores` through :func:`evaluate_retriever`."""
    return evaluate_retriever(task, ranked_ids(sparse_search(encode_sparse)))


def evaluate_retriever(task: TaskSpec, retrieve: Retrieve) -> tuple[dict[str, float], dict[str, Any]]:
    """A retrieval task scored with any retriever (BM25 today): ``retrieve`` gets the corpus, the evaluated
    queries' texts and the depth (``max(K_VALUES) + 1``, one spare for a dropped identical id) and returns the
    rankings; :func:`ranking_scores` does the rest, as for the dense path."""
    corpus, queries, qrels, qids = _retrieval_data(task)
    doc_ids = list(corpus)
    rankings = retrieve(doc_ids, [corpus[i] for i in doc_ids], [queries[i] for i in qids], max(K_VALUES) + 1)
    if len(rankings) != len(qids):
        raise InputError(f"the retriever returned {len(rankings)} rankings for {len(qids)} queries")
    return ranking_scores(task, qids, dict(zip(qids, rankings)), qrels)


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------
def _read_labelled(task: TaskSpec, role: str) -> tuple[list[str], list[str]]:
    rows = read_tsv(task.path(role), (task.text_column, task.label_column))
    return [r[task.text_column] for r in rows], [r[task.label_column] for r in rows]


def undersample(labels: list[str], samples_per_label: int, idxs: np.ndarray, rng: np.random.RandomState) -> list[int]:
    """MTEB's ``_undersample_data``: shuffle the (carried-over) index array, keep the first n per label."""
    rng.shuffle(idxs)
    counter: dict[str, int] = defaultdict(int)
    keep = []
    for i in idxs:
        if counter[labels[i]] < samples_per_label:
            keep.append(int(i))
            counter[labels[i]] += 1
    return keep


def _logreg() -> LogisticRegression:
    return LogisticRegression(random_state=SEED, max_iter=100)


def _classification_scores(y_true: list[str], y_pred: np.ndarray, binary: bool) -> dict[str, float]:
    s = {
        "accuracy": accuracy_score(y_true, y_pred),
        "f1": f1_score(y_true, y_pred, average="macro"),
        "f1_weighted": f1_score(y_true, y_pred, average="weighted"),
    }
    if binary:
        classes = sorted(set(y_true))
        yt = np.array([c == classes[1] for c in y_true], dtype=int)
        yp = np.array([c == classes[1] for c in y_pred], dtype=int)
        s["ap"] = average_precision_score(yt, yp, average="macro")
        s["ap_weighted"] = average_precision_score(yt, yp, average="weighted")
    return {k: float(v) for k, v in s.items()}


def _few_shot(
    task: TaskSpec,
    encode: Encode,
    train: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    rng: np.random.RandomState,
) -> tuple[dict[str, float], dict[str, Any]]:
    """MTEB logReg protocol: n_experiments undersampled fits, test embeddings encoded once."""
    x_text, y = train
    t_text, t_y = test
    x_test = encode(t_text, "query")
    binary = len(set(y)) == 2
    runs, correct = [], np.zeros(len(t_y))
    idxs = np.arange(len(y))
    for _ in range(task.n_experiments):
        if task.samples_per_label is None:
            keep = list(range(len(y)))
        else:
            keep = undersample(y, task.samples_per_label, idxs, rng)
        x_train = encode([x_text[i] for i in keep], "query")
        clf = _logreg().fit(x_train, [y[i] for i in keep])
        pred = clf.predict(x_test)
        runs.append(_classification_scores(t_y, pred, binary))
        correct += pred == np.array(t_y)
    scores = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    per = {
        "kind": "mean",
        "metric": "accuracy",
        "ids": list(range(len(t_y))),
        "values": (correct / task.n_experiments).tolist(),
    }
    return scores, per


def _cross_validated(task: TaskSpec, encode: Encode) -> tuple[dict[str, float], dict[str, Any]]:
    """SentEval-style k-fold CV (stratified, shuffled, seed 42) with logistic regression."""
    text, y = _read_labelled(task, "all")
    x = encode(text, "query")
    y_arr = np.array(y)
    pred = np.empty(len(y), dtype=object)
    for train_idx, test_idx in StratifiedKFold(task.cv_folds, shuffle=True, random_state=SEED).split(x, y_arr):
        pred[test_idx] = _logreg().fit(x[train_idx], y_arr[train_idx]).predict(x[test_idx])
    scores = _classification_scores(y, pred, len(set(y)) == 2)
    per = {
        "kind": "mean",
        "metric": "accuracy",
        "ids": list(range(len(y))),
        "values": (pred == y_arr).astype(float).tolist(),
    }
    return scores, per


def evaluate_classification(
    task: TaskSpec, encode: Encode, rng: np.random.RandomState | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """One split (``task.split``). ``rng`` stands for numpy's global RNG, which MTEB seeds with 42 when a
    task is created and carries across its splits and subsets (see ``evaluate_task``)."""
    if task.cv_folds:
        return _cross_validated(task, encode)
    rng = rng if rng is not None else np.random.RandomState(SEED)
    if not task.subsets:
        return _few_shot(task, encode, _read_labelled(task, "train"), _read_labelled(task, task.split), rng)
    # multi-subset task: MTEB evaluates subset by subset within a split, carrying the RNG over
    scores: dict[str, float] = {}
    pers: dict[str, Any] = {}
    split = task.split
    for sub in task.subsets:
        s, pers[sub] = _few_shot(
            task, encode, _read_labelled(task, f"{sub}/train"), _read_labelled(task, f"{sub}/{split}"), rng
        )
        for k, v in s.items():
            scores[f"{split}/{sub}/{k}"] = v
    main = [scores[f"{split}/{sub}/accuracy"] for sub in task.subsets]
    scores["accuracy"] = float(np.mean(main))
    # items weighted 1/(subsets x subset size): their weighted mean is the main score (the mean over subsets)
    per = {
        "kind": "mean",
        "metric": "accuracy",
        "ids": [f"{sub}/{i}" for sub in task.subsets for i in pers[sub]["ids"]],
        "values": [v for sub in task.subsets for v in pers[sub]["values"]],
        "weights": [
            1.0 / (len(task.subsets) * len(pers[sub]["values"])) for sub in task.subsets for _ in pers[sub]["values"]
        ],
    }
    return scores, per


# ---------------------------------------------------------------------------------------------
# Clustering (MTEB 1.12 "fast" protocol: AbsTaskClusteringFast / evaluate_clustering_bootstrapped)
# ---------------------------------------------------------------------------------------------
def label_levels(labels: list[str], separator: str | None) -> list[list[str]]:
    """Each document's labels, one per hierarchy level (a flat label is one level)."""
    return [lab.split(separator) if separator else [lab] for lab in labels]


def clustering_bootstrapped(
    x: np.ndarray,
    labels: list[list[str]],
    *,
    n_bootstrap: int,
    cluster_size: int,
    kmeans_batch_size: int,
    max_depth: int | None,
    rng: random.Random,
    np_rng: np.random.RandomState,
) -> dict[str, list[float]]:
    """mteb 1.12's ``evaluate_clustering_bootstrapped``: per level, k = the number of distinct labels
    of that level over the whole (downsampled) set; ``n_bootstrap`` draws of ``cluster_size``
    documents **with** replacement (``rng.choices``), each clustered by
    ``MiniBatchKMeans(k, batch_size, n_init="auto")`` and scored by V-measure.

    mteb passes no ``random_state``, so k-means draws from numpy's global RNG, which every task seeds
    with 42 at creation; ``np_rng`` plays that role here (one stream, carried across draws and levels).
    Documents lacking a level are left out of that level."""
    depth = max(map(len, labels))
    depth = min(max_depth, depth) if max_depth is not None else depth
    out: dict[str, list[float]] = {}
    for level in range(depth):
        valid = np.array([len(lab) > level for lab in labels])
        level_labels = np.array([lab[level] for lab in labels if len(lab) > level], dtype=object)
        level_x = x[valid]
        k = len(set(level_labels.tolist()))
        values = []
        for _ in range(n_bootstrap):
            idx = rng.choices(range(len(level_x)), k=cluster_size)
            km = MiniBatchKMeans(n_clusters=k, batch_size=kmeans_batch_size, n_init="auto", random_state=np_rng)
            values.append(float(v_measure_score(level_labels[idx].tolist(), km.fit_predict(level_x[idx]))))
        out[f"Level {level}"] = values
    return out


def evaluate_clustering(
    task: TaskSpec, encode: Encode, rng: np.random.RandomState | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """mteb 1.12 ``AbsTaskClusteringFast._evaluate_subset``: ``random.Random(42)`` first downsamples the
    split to ``max_documents_to_embed`` (``sample``, without replacement, only when larger), the
    downsampled documents are embedded once, then the same ``random.Random`` drives the bootstrap
    draws (``clustering_bootstrapped``). Main score = mean V-measure over every draw of every level."""
    text, labels = _read_labelled(task, task.split)
    py_rng = random.Random(SEED)
    if len(text) > task.max_documents_to_embed:
        keep = py_rng.sample(range(len(text)), k=task.max_documents_to_embed)
        text, labels = [text[i] for i in keep], [labels[i] for i in keep]
    x = encode(text, "query")
    levels = clustering_bootstrapped(
        x,
        label_levels(labels, task.label_separator),
        n_bootstrap=task.n_bootstrap,
        cluster_size=task.max_documents_per_cluster,
        kmeans_batch_size=task.kmeans_batch_size,
        max_depth=task.max_depth,
        rng=py_rng,
        np_rng=rng if rng is not None else np.random.RandomState(SEED),
    )
    values = [v for vs in levels.values() for v in vs]
    scores = {"v_measure": float(np.mean(values)), "v_measure_std": float(np.std(values))}
    if len(levels) > 1:
        scores.update({f"v_measure_level_{i}": float(np.mean(vs)) for i, vs in enumerate(levels.values())})
    return scores, {"kind": "repeats", "values": values}


# ---------------------------------------------------------------------------------------------
# Pair classification
# ---------------------------------------------------------------------------------------------
def best_accuracy_and_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Best accuracy and best F1 over all thresholds (scores: higher = more similar)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    n_pos = y.sum()
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    # a threshold between distinct scores only (ties are not split)
    last_of_group = np.r_[s[1:] != s[:-1], True]
    tp, fp = tp[last_of_group], fp[last_of_group]
    tn = (len(y) - n_pos) - fp
    acc = max(((tp + tn) / len(y)).max(), (len(y) - n_pos) / len(y))
    f1 = (2 * tp / (tp + fp + n_pos)).max() if n_pos else 0.0
    return float(acc), float(f1)


def evaluate_pair_classification(
    task: TaskSpec, encode: Encode, rng: np.random.RandomState | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    rows = [
        r
        for role in (task.merge_roles or [task.split])
        for r in read_tsv(task.path(role), ("sentence1", "sentence2", "label"))
    ]
    try:
        labels = np.array([int(r["label"]) for r in rows])
    except ValueError as exc:
        raise DatasetError(f"dataset file corrupt: a label of task {task.name} is not 0/1 ({exc})") from None
    a = encode([r["sentence1"] for r in rows], "query")
    b = encode([r["sentence2"] for r in rows], "query")
    sims = {
        "cosine": 1 - paired_cosine_distances(a, b),
        "dot": (a * b).sum(1),
        "manhattan": -paired_manhattan_distances(a, b),
        "euclidean": -paired_euclidean_distances(a, b),
    }
    scores: dict[str, float] = {}
    for name, s in sims.items():
        scores[f"{name}_ap"] = float(average_precision_score(labels, s))
        scores[f"{name}_accuracy"], scores[f"{name}_f1"] = best_accuracy_and_f1(s, labels)
    scores["max_ap"] = max(scores[f"{n}_ap"] for n in sims)
    scores["max_f1"] = max(scores[f"{n}_f1"] for n in sims)
    scores["max_accuracy"] = max(scores[f"{n}_accuracy"] for n in sims)
    per = {"kind": "ap", "ids": list(range(len(rows))), "pred": sims["cosine"].tolist(), "gold": labels.tolist()}
    return scores, per


# ---------------------------------------------------------------------------------------------
# Reranking (MTEB v1 RerankingEvaluator)
# ---------------------------------------------------------------------------------------------
def evaluate_reranking(
    task: TaskSpec, encode: Encode, rng: np.random.RandomState | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    rows = read_jsonl(task.path(task.split))
    rows = [r for r in rows if r.get("positive") and r.get("negative")]  # MTEB skips queries without both
    if not rows:
        raise DatasetError(f"dataset file corrupt: {task.path(task.split)} has no query with positives and negatives")
    q = encode([r["query"] for r in rows], "query")
    docs = sorted({d for r in rows for d in r["positive"] + r["negative"]})
    index = {d: i for i, d in enumerate(docs)}
    dv = encode(docs, "document")
    q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)
    dv = dv / np.linalg.norm(dv, axis=1, keepdims=True).clip(1e-12)
    aps, mrrs = [], []
    for qi, r in enumerate(rows):
        cands = r["positive"] + r["negative"]
        rel = np.array([1] * len(r["positive"]) + [0] * len(r["negative"]))
        s = dv[[index[c] for c in cands]] @ q[qi]
        aps.append(float(average_precision_score(rel, s)))
        order = np.argsort(-s, kind="stable")[:10]
        first = next((rank for rank, i in enumerate(order) if rel[i]), None)
        mrrs.append(1.0 / (first + 1) if first is not None else 0.0)
    scores = {"map": float(np.mean(aps)), "mrr_at_10": float(np.mean(mrrs))}
    return scores, {"kind": "mean", "metric": "map", "ids": list(range(len(rows))), "values": aps}


Evaluator = Callable[[TaskSpec, Encode, "np.random.RandomState | None"], tuple[dict[str, float], dict[str, Any]]]
EVALUATORS: dict[str, Evaluator] = {
    "sts": evaluate_sts,
    "retrieval": evaluate_retrieval,
    "classification": evaluate_classification,
    "clustering": evaluate_clustering,
    "pair_classification": evaluate_pair_classification,
    "reranking": evaluate_reranking,
}


def evaluate_task(
    task: TaskSpec, encode: Encode, evaluator: Evaluator | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """Every split of ``task.evaluation_splits`` in order (validation before test, as ``MTEB.run``
    does with a task's ``eval_splits``), one numpy RNG seeded 42 carried across them (MTEB seeds the
    global RNG once, when the task is created). The scores and per-example record are those of
    ``task.split``, the reported split; the other splits' scores are kept as ``"<split>/<metric>"``.
    ``evaluator`` replaces the task type's own (a sparse model's or a hybrid's retrieval)."""
    evaluator = evaluator or EVALUATORS[task.type]
    rng = np.random.RandomState(SEED)
    scores: dict[str, float] = {}
    per: dict[str, Any] = {}
    for split in task.evaluation_splits:
        s, p = evaluator(task.model_copy(update={"split": split}), encode, rng)
        if split == task.split:
            scores.update(s)
            per = p
        else:
            scores.update({k if k.startswith(f"{split}/") else f"{split}/{k}": v for k, v in s.items()})
    return scores, per
