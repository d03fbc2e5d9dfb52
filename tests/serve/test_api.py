"""The routes against the library: every answer equals what Embedder.encode / VectorIndex.search give."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.conftest import cosines
from tests.serve.conftest import TEXTS, running

MIN_COS = 0.99999


def _client(srv, key: str = "unused"):
    from openai import OpenAI

    return OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=30)


def test_openai_client_float_and_base64_equal_encode(server, tiny_emb):
    client = _client(server)
    ref = tiny_emb.encode(TEXTS)
    for fmt in ("float", "base64"):
        res = client.embeddings.create(model="tiny", input=TEXTS, encoding_format=fmt)
        rows = [d.embedding for d in sorted(res.data, key=lambda d: d.index)]
        if fmt == "base64":  # asked for explicitly, the SDK hands the strings over as they are
            rows = [np.frombuffer(base64.b64decode(r), dtype="<f4") for r in rows]
        got = np.array(rows)
        assert got.shape == ref.shape
        assert cosines(got, ref).min() >= MIN_COS
        assert np.abs(got - ref).max() < 1e-5
        assert res.model == "tiny"
        assert res.usage.prompt_tokens == sum(len(x) for x in tiny_emb.tokenize(TEXTS).ids)
    # the SDK's default (base64 decoded by the client) and a single string
    one = client.embeddings.create(model="tiny", input=TEXTS[0])
    assert cosines(np.array([one.data[0].embedding]), ref[:1]).min() >= MIN_COS


def test_openai_dimensions_truncate_then_renormalise(server, tiny_emb, tiny_bert):
    client = _client(server)
    res = client.embeddings.create(model="tiny", input=TEXTS, dimensions=8, encoding_format="float")
    got = np.array([d.embedding for d in res.data])
    ref = tiny_emb.encode(TEXTS)[:, :8]
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    assert got.shape == (len(TEXTS), 8)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosines(got, ref).min() >= MIN_COS
    # the same as a model that truncates itself (its Truncate module)
    import embedlab

    with_dim = embedlab.load(str(tiny_bert), truncate_dim=8).encode(TEXTS)
    assert np.abs(got - with_dim).max() < 1e-5


def test_base64_is_little_endian_float32(server, tiny_emb):
    r = httpx.post(server.url + "/v1/embeddings", json={"input": TEXTS[:2], "encoding_format": "base64"})
    assert r.status_code == 200
    rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in r.json()["data"]]
    assert cosines(np.stack(rows), tiny_emb.encode(TEXTS[:2])).min() >= MIN_COS
    for key in ("x-tokenize-time", "x-queue-time", "x-inference-time"):
        assert float(r.headers[key]) >= 0


def test_token_id_inputs_equal_text_inputs(server, tiny_emb):
    ids = tiny_emb.tokenize(TEXTS[:3]).ids
    by_text = httpx.post(server.url + "/v1/embeddings", json={"input": TEXTS[:3]}).json()
    by_ids = httpx.post(server.url + "/v1/embeddings", json={"input": ids}).json()
    one = httpx.post(server.url + "/v1/embeddings", json={"input": ids[0]}).json()
    a = np.array([d["embedding"] for d in by_text["data"]])
    b = np.array([d["embedding"] for d in by_ids["data"]])
    assert np.abs(a - b).max() < 1e-6
    assert np.abs(np.array(one["data"][0]["embedding"]) - a[0]).max() < 1e-6
    # /tokenize gives the same ids
    toks = httpx.post(server.url + "/tokenize", json={"inputs": TEXTS[:3]}).json()
    assert [[t["id"] for t in row] for row in toks] == ids
    assert toks[0][0]["special"] and toks[0][0]["text"] == "[CLS]"
    plain = httpx.post(server.url + "/tokenize", json={"inputs": TEXTS[0], "add_special_tokens": False}).json()
    assert [t["id"] for t in plain[0]] == ids[0][1:-1]
    # offsets: each non-special token's span, cut from the input text, is the token's text (lower-cased
    # WordPiece, "##" marks a continuation); special tokens have none
    for text, row in zip(TEXTS[:3], toks):
        assert row[0]["start"] is None and row[-1]["stop"] is None
        for t in row[1:-1]:
            assert text[t["start"] : t["stop"]].lower() == t["text"].removeprefix("##"), (text, t)


def test_tokenize_offsets_skip_the_prompt(prompted_emb):
    """With a prompt, offsets still index the user's text, and the prompt's tokens have none."""
    with running(prompted_emb) as srv:
        toks = httpx.post(srv.url + "/tokenize", json={"inputs": TEXTS[0], "prompt_name": "query"}).json()[0]
    n_prompt = prompted_emb.tokenize([TEXTS[0]], prompted_emb.prompts["query"]).prompt_lengths[0]
    assert all(t["start"] is None for t in toks[:n_prompt])
    spans = [t for t in toks[n_prompt:] if not t["special"]]
    assert spans and spans[0]["start"] == 0
    for t in spans:
        assert TEXTS[0][t["start"] : t["stop"]].lower() == t["text"].removeprefix("##")


def test_input_type_uses_the_models_named_prompt(prompted_emb):
    with running(prompted_emb) as srv:
        for input_type, name in ((None, None), ("query", "query"), ("document", "document")):
            body = {"input": TEXTS, **({"input_type": input_type} if input_type else {})}
            got = np.array([d["embedding"] for d in httpx.post(srv.url + "/v1/embeddings", json=body).json()["data"]])
            ref = prompted_emb.encode(TEXTS, prompt_name=name)
            assert cosines(got, ref).min() >= MIN_COS, input_type
        q = np.array(
            httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS, "input_type": "query"}).json()["data"][0][
                "embedding"
            ]
        )
        d = np.array(httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS}).json()["data"][0]["embedding"])
        assert np.abs(q - d).max() > 1e-3  # the prompt changes the vector
        r = httpx.post(srv.url + "/v1/embeddings", json={"input": "x", "input_type": "nope"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input_type"
        assert "query" in r.json()["error"]["message"]


def test_tei_embed_similarity(server, tiny_emb):
    ref = tiny_emb.encode(TEXTS)
    got = np.array(httpx.post(server.url + "/embed", json={"inputs": TEXTS}).json())
    assert cosines(got, ref).min() >= MIN_COS
    raw = np.array(httpx.post(server.url + "/embed", json={"inputs": TEXTS, "normalize": False}).json())
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)  # the pooled vector before normalisation
    assert cosines(raw, ref).min() >= MIN_COS
    sims = httpx.post(
        server.url + "/similarity", json={"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS[1:]}}
    ).json()
    assert np.allclose(sims, ref[1:] @ ref[0], atol=1e-5)


def test_rerank_order_equals_brute_force_cosine(prompted_emb):
    query = "why is the sky blue"
    with running(prompted_emb) as srv:
        hits = httpx.post(srv.url + "/rerank", json={"query": query, "texts": TEXTS, "return_text": True}).json()
        top = httpx.post(srv.url + "/rerank", json={"query": query, "texts": TEXTS, "top_n": 3}).json()
    q = prompted_emb.encode([query], prompt_name="query")[0]
    d = prompted_emb.encode(TEXTS, prompt_name="document")
    scores = d @ q
    assert [h["index"] for h in hits] == list(np.argsort(-scores, kind="stable"))
    assert np.allclose([h["score"] for h in hits], np.sort(scores)[::-1], atol=1e-5)
    assert all(h["text"] == TEXTS[h["index"]] for h in hits)
    assert [h["index"] for h in top] == [h["index"] for h in hits[:3]] and "text" not in top[0]


@pytest.fixture(scope="module")
def indexed(tiny_emb, tmp_path_factory):
    """Two saved indexes of TEXTS (float32 and binary codes) recording the model's fingerprint."""
    from embedlab.index import VectorIndex

    corpus = TEXTS + [f"{a} {b}" for a in TEXTS[:4] for b in TEXTS[4:]]
    vectors = tiny_emb.encode(corpus)
    model = {"name": "tiny", "fingerprint": tiny_emb.fingerprint()}
    ids = [f"d{i}" for i in range(len(corpus))]
    root = tmp_path_factory.mktemp("indexes")
    for codec in ("float32", "binary"):
        VectorIndex.build(vectors, ids, codec, texts=corpus, model=model).save(root / codec)
    return root, corpus, vectors


def test_search_equals_brute_force(tiny_emb, indexed):
    from embedlab.serve import load_indexes

    root, corpus, vectors = indexed
    indexes = load_indexes([str(root / "float32"), f"bits={root / 'binary'}"])
    assert sorted(indexes) == ["bits", "float32"]
    queries = ["the cat", "a green river"]
    qv = tiny_emb.encode(queries)
    exact = qv @ vectors.T
    with running(tiny_emb, indexes=indexes) as srv:
        r = httpx.post(srv.url + "/v1/search", json={"index": "float32", "query": queries, "k": 5})
        assert r.status_code == 200
        res = r.json()
        for row, data in zip(exact, res["data"]):
            order = np.argsort(-row, kind="stable")[:5]
            assert [h["id"] for h in data["hits"]] == [f"d{i}" for i in order]
            assert np.allclose([h["score"] for h in data["hits"]], row[order], atol=1e-5)
            assert data["hits"][0]["text"] == corpus[order[0]]
        # binary codes + rescoring (k x 8 candidates of 40) finds the exact top 3 of this small corpus
        bits = httpx.post(
            srv.url + "/v1/search", json={"index": "bits", "query": queries[0], "k": 3, "rescore": 8}
        ).json()
        assert [h["id"] for h in bits["data"][0]["hits"]] == [f"d{i}" for i in np.argsort(-exact[0], kind="stable")[:3]]
        big_k = httpx.post(srv.url + "/v1/search", json={"index": "float32", "query": "x", "k": 1000}).json()
        assert len(big_k["data"][0]["hits"]) == len(corpus)
        unknown = httpx.post(srv.url + "/v1/search", json={"index": "nope", "query": "x"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        unnamed = httpx.post(srv.url + "/v1/search", json={"query": "x"})
        assert unnamed.status_code == 400 and unnamed.json()["error"]["param"] == "index"
        models = httpx.get(srv.url + "/v1/models").json()["data"][0]
        assert {ix["name"] for ix in models["indexes"]} == {"float32", "bits"} and models["dimensions"] == 32


def test_index_from_another_model_is_refused(tiny_emb, indexed, tiny_llama):
    import embedlab
    from embedlab.errors import EmbedlabError
    from embedlab.serve import Engine, create_app, load_indexes

    other = embedlab.load(str(tiny_llama))
    with pytest.raises(EmbedlabError, match="fingerprint"):
        create_app(Engine(other, dtype="fp32"), model_name="x", indexes=load_indexes([str(indexed[0] / "float32")]))


def test_precision_binary_and_int8_are_the_index_codecs(server, tiny_emb):
    import faiss

    from embedlab.index import VectorIndex

    texts = TEXTS
    ref = tiny_emb.encode(texts)
    binary = httpx.post(server.url + "/v1/embeddings", json={"input": texts, "precision": "binary"}).json()
    got = np.array([d["embedding"] for d in binary["data"]], dtype=np.uint8)
    assert got.shape == (len(texts), 4)
    index = VectorIndex.build(ref, [str(i) for i in range(len(texts))], "binary")
    stored = faiss.vector_to_array(index.codes.xb).reshape(len(texts), -1)
    assert np.array_equal(got, stored)
    b64 = httpx.post(
        server.url + "/v1/embeddings", json={"input": texts, "precision": "binary", "encoding_format": "base64"}
    ).json()
    assert np.array_equal(np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), np.uint8), got[0])

    r = httpx.post(server.url + "/v1/embeddings", json={"input": texts, "precision": "int8"}).json()
    codes = np.array([d["embedding"] for d in r["data"]])
    assert codes.min() >= -128 and codes.max() <= 127 and codes.shape == ref.shape
    # by hand, with no embedlab quantiser: per-dimension min/max of the calibration texts' unit vectors
    # (the packaged demo corpus and queries, embedded by encode), then SQ8's code floor(255 * (x - lo) /
    # (hi - lo)), clipped to 0..255, stored as code - 128
    from importlib import resources

    cal_texts = [
        line
        for name in ("demo_corpus.txt", "demo_queries.txt")
        for line in resources.files("embedlab.data").joinpath(name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    cal = tiny_emb.encode(cal_texts).astype(np.float64)
    cal /= np.linalg.norm(cal, axis=1, keepdims=True)
    lo, hi = cal.min(0), cal.max(0)
    unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    by_hand = np.clip(np.floor(255 * (unit - lo) / (hi - lo)), 0, 255) - 128
    # the server's rows come from other batches than encode's (float noise of ~1e-7 may move a value across
    # a code boundary): at most one step apart, and nearly all equal
    assert np.abs(codes - by_hand).max() <= 1 and (codes == by_hand).mean() > 0.98
    # a client decodes the codes with the ranges the server publishes, by the documented formula: those
    # ranges are the calibration min/max, and the decoded vectors are close to the float ones
    ranges = httpx.get(server.url + "/v1/quantization/int8").json()
    vmin, vdiff = np.array(ranges["vmin"]), np.array(ranges["vdiff"])
    assert ranges["dimensions"] == ref.shape[1] and vmin.shape == vdiff.shape == (ref.shape[1],)
    assert np.allclose(vmin, lo, atol=1e-5) and np.allclose(vdiff, hi - lo, atol=1e-5)
    decoded = vmin + (codes + 128 + 0.5) / 255 * vdiff
    step = (hi - lo) / 255  # half a step from the code's centre, plus the one-step tolerance above
    assert (np.abs(decoded - np.clip(unit, lo, hi)) <= 1.5 * step + 1e-6).all()
    f16 = httpx.post(server.url + "/v1/embeddings", json={"input": texts, "precision": "float16"}).json()
    halves = np.array([d["embedding"] for d in f16["data"]])
    assert np.abs(halves - unit.astype(np.float16).astype(np.float64)).max() <= 2.0**-11  # one f16 step near 1
    half = httpx.get(server.url + "/v1/quantization/int8", params={"dimensions": 8}).json()
    assert len(half["vmin"]) == 8
    assert httpx.get(server.url + "/v1/quantization/int8", params={"dimensions": 10**6}).status_code == 400
    dims = httpx.post(server.url + "/v1/embeddings", json={"input": texts, "precision": "binary", "dimensions": 12})
    assert dims.status_code == 400 and dims.json()["error"]["param"] == "dimensions"


def test_page_is_served(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "/v1/search" in html and "/v1/embeddings" in html and 'id="heat"' in html
    assert "http://" not in html and "https://" not in html  # no CDN: everything is in the file


@pytest.mark.slow
def test_packaged_minilm_equals_encode():
    """`embedlab serve minilm-l6` in Python: the packaged model, the openai client, encode's vectors."""
    from openai import OpenAI

    import embedlab
    from embedlab.serve import BackgroundServer, build_app

    app = build_app("minilm-l6", dtype="fp32", device="cpu")
    emb = app.state.engine.embedder
    texts = ["A man is playing a guitar.", "The stock market fell sharply today.", "A cat sleeps on the sofa."]
    with BackgroundServer(app) as srv:
        client = OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        got = np.array([d.embedding for d in client.embeddings.create(model="minilm-l6", input=texts).data])
        half = np.array(
            [d.embedding for d in client.embeddings.create(model="minilm-l6", input=texts, dimensions=128).data]
        )
    ref = embedlab.load("minilm-l6").encode(texts)
    assert cosines(got, ref).min() >= MIN_COS
    assert cosines(half, ref[:, :128]).min() >= MIN_COS
    assert emb.output_dim == 384


def test_decoder_with_eos_and_truncation_equals_encode(tiny_llama):
    """Last-token pooling, an appended EOS and left/right padding: the same rows as encode, also when
    --max-input-tokens cuts some inputs (the EOS is kept after the cut)."""
    import embedlab

    emb = embedlab.load(str(tiny_llama))
    assert emb.append_eos
    with running(emb, max_input_tokens=6) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS}).json()
    short = emb.with_options(max_length=6)
    ref = short.encode(TEXTS)
    got = np.array([d["embedding"] for d in r["data"]])
    assert cosines(got, ref).min() >= MIN_COS
    assert r["usage"]["truncated_inputs"] == short.last_stats.truncated > 0
    assert r["usage"]["prompt_tokens"] == short.last_stats.tokens


def test_search_without_an_index_says_how_to_load_one(server):
    for body in ({"query": "x"}, {"index": "docs", "query": "x"}):
        r = httpx.post(server.url + "/v1/search", json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        message = r.json()["error"]["message"]
        assert "no index loaded" in message and "--index DIR" in message and "none" not in message


def test_embed_sparse_answers_tei_json_equal_to_encode_and_dense_routes_refuse(tiny_splade, server):
    from embedlab.models import Embedder

    splade = Embedder.from_pretrained(tiny_splade)
    ref = splade.encode(TEXTS[:3])
    assert (ref > 0).sum(axis=1).min() > 0
    with running(splade, model_name="tiny-splade") as srv:
        r = httpx.post(srv.url + "/embed_sparse", json={"inputs": TEXTS[:3]}, timeout=30)
        assert r.status_code == 200, r.text
        for row, want in zip(r.json(), ref):
            assert [v["index"] for v in row] == np.flatnonzero(want).tolist()
            assert np.allclose([v["value"] for v in row], want[np.flatnonzero(want)], atol=1e-5)
        one = httpx.post(srv.url + "/embed_sparse", json={"inputs": TEXTS[0]}, timeout=30).json()
        assert len(one) == 1 and [v["index"] for v in one[0]] == np.flatnonzero(ref[0]).tolist()
        for route, body in (("/embed", {"inputs": "x"}), ("/v1/embeddings", {"input": "x", "model": "tiny-splade"})):
            r = httpx.post(srv.url + route, json=body, timeout=30)
            assert r.status_code == 400 and "/embed_sparse" in r.json()["error"]["message"]
        r = httpx.post(srv.url + "/embed_sparse", json={"inputs": []}, timeout=30)
        assert r.status_code == 400
    r = httpx.post(server.url + "/embed_sparse", json={"inputs": "x"}, timeout=30)  # a dense model
    assert r.status_code == 400 and "needs a sparse model" in r.json()["error"]["message"]


def test_search_over_a_hybrid_index_is_the_rrf_of_its_parts_by_hand(tiny_bert, tmp_path):
    import embedlab
    from embedlab.index import VectorIndex
    from embedlab.index.hybrid import save_hybrid
    from embedlab.index.lexical import BM25Index
    from embedlab.serve.app import load_indexes

    emb = embedlab.load(str(tiny_bert))
    ids = [f"d{i}" for i in range(len(TEXTS))]
    record = {"name": str(tiny_bert), "fingerprint": emb.fingerprint(), "pooling": emb.head.name}
    dense = VectorIndex.build(emb.encode(TEXTS), ids, "float32", texts=TEXTS, model=record)
    save_hybrid(tmp_path / "hyb", dense, BM25Index().build(ids, TEXTS))
    query = "the cat sat by the river"
    sims = dict(zip(ids, emb.encode(TEXTS) @ emb.encode([query])[0]))
    lexical = dict(zip(*BM25Index().build(ids, TEXTS).search([query], 100)[0]))
    fused: dict[str, float] = {}
    for run in (sims, lexical):
        for rank, doc in enumerate(sorted(sorted(run, reverse=True), key=lambda d: -run[d]), start=1):
            fused[doc] = fused.get(doc, 0.0) + 1 / (60 + rank)
    want = sorted(sorted(fused, reverse=True), key=lambda d: -fused[d])[:4]
    with running(emb, indexes=load_indexes([str(tmp_path / "hyb")])) as srv:
        r = httpx.post(srv.url + "/v1/search", json={"query": query, "k": 4, "fusion": "rrf"}, timeout=30)
        assert r.status_code == 200, r.text
        hits = r.json()["data"][0]["hits"]
        assert [h["id"] for h in hits] == want
        assert np.allclose([h["score"] for h in hits], [fused[d] for d in want], atol=1e-6)
        assert hits[0]["text"] == TEXTS[ids.index(want[0])]
        r = httpx.post(srv.url + "/v1/search", json={"query": query, "fusion": "nope"}, timeout=30)
        assert r.status_code == 400 and "rrf, convex" in r.json()["error"]["message"]
        r = httpx.post(srv.url + "/v1/search", json={"query": query, "fusion": "convex"}, timeout=30)
        assert r.status_code == 400 and "weight" in r.json()["error"]["message"]
