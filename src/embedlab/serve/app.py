"""The HTTP layer: parse, check request-level limits, call the :class:`Engine`, shape the answer.

Handlers never catch errors: every exception goes to one handler that reads its class's
``http_status`` (:mod:`embedlab.serve.errors`). Routes: OpenAI's ``POST /v1/embeddings`` (plus
``input_type`` and ``precision``), TEI's ``/embed``, ``/embed_sparse`` (a sparse model), ``/similarity``, ``/rerank`` and ``/tokenize``,
``POST /v1/search`` over loaded indexes, ``GET /v1/models``, ``/health``, ``/ready``, ``/metrics`` and
the search page at ``/``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedlab._version import __version__
from embedlab.errors import ClientGone, ConfigError, EmbedlabError, EmptyInput, Overloaded, Unavailable
from embedlab.serve import schemas as s
from embedlab.serve.engine import Embedded, Engine, Prepared
from embedlab.serve.errors import BadRequest, NotFound, TooManyInputs, Unauthorized, error_body, exception_body
from embedlab.serve.output import request_param
from embedlab.validation import non_negative_int, positive_int

log = logging.getLogger(__name__)

#: Statuses any API route may answer (all with an ``{"error": ...}`` body), declared for the OpenAPI schema.
_ERRORS = {code: {"model": s.ErrorResponse} for code in (400, 401, 404, 413, 422, 429, 500, 503)}
_OPEN_PATHS = ("/health", "/ready", "/metrics")
MAX_BODY_BYTES = 64 << 20  # a declared Content-Length above this is refused with 413 before the body is read


def create_app(
    engine: Engine,
    *,
    model_name: str,
    indexes: Mapping[str, Any] | None = None,
    api_key: str | None = None,
    request_timeout: float | None = 30.0,
) -> FastAPI:
    """A FastAPI app serving ``engine``'s model as ``model_name``. ``indexes`` maps names to loaded
    :class:`~embedlab.index.VectorIndex` objects (checked against the model's fingerprint and width).
    ``api_key``: when set, every route but /, /health, /ready and /metrics needs ``Authorization: Bearer KEY``.
    ``request_timeout``: seconds a request may wait for the model (queue + forward), then 503.
    The app's lifespan starts the engine (and its warm-up) and, at shutdown, drains and stops it."""
    indexes = dict(indexes or {})
    for name, index in indexes.items():
        _check_index(name, index, engine)
    if api_key is not None and not api_key:
        raise ConfigError("the API key is empty")
    drain_timeout = float(request_timeout or 30.0)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        engine.start()
        await asyncio.to_thread(engine.wait_ready, 600.0)
        yield
        await asyncio.to_thread(engine.stop, True, drain_timeout)

    app = FastAPI(
        title="embedlab",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description=f"Embeddings from {model_name} (embedlab {__version__}); errors are OpenAI-style.",
    )
    app.state.engine = engine
    app.state.model_name = model_name
    app.state.indexes = indexes
    app.state.started = int(time.time())
    _install_error_handlers(app)
    app.add_middleware(_Gate, engine=engine, request_timeout=request_timeout)
    deps = [Depends(_api_key_check(api_key))] if api_key else []
    api = APIRouter(dependencies=deps, responses=_ERRORS)
    _add_embedding_routes(api, engine, model_name, request_timeout)
    _add_search_routes(api, engine, model_name, indexes, request_timeout)
    app.include_router(api)
    _add_status_routes(app, engine)
    return app


# -- shared helpers --------------------------------------------------------------------------------
@dataclass
class HybridServing:
    """A hybrid index as served: the dense part searched with the engine's query vectors, the lexical part
    (BM25, or a sparse model's index) with its own :class:`~embedlab.index.hybrid.Retriever`, then fused."""

    dense: Any
    lexical: Any
    fusion: dict[str, Any]

    @property
    def model(self) -> dict[str, Any]:
        return self.dense.model

    @property
    def ids(self) -> list[str]:
        return self.dense.ids

    @property
    def texts(self) -> Any:
        return self.dense.texts

    def __len__(self) -> int:
        return len(self.dense)


def _check_index(name: str, index: Any, engine: Engine) -> None:
    if isinstance(index, HybridServing):
        index = index.dense
    if index.dim != engine.default_dim:
        raise ConfigError(f"index {name!r} holds {index.dim}-d vectors but the model gives {engine.default_dim}")
    index.check_model({"fingerprint": engine.embedder.fingerprint()})


def _api_key_check(api_key: str | None) -> Callable[..., Awaitable[None]]:
    bearer = HTTPBearer(auto_error=False, description="the key in --api-key-file")
    expected = (api_key or "").encode()

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            raise Unauthorized("missing or wrong API key: send 'Authorization: Bearer <key>'")

    return check


async def _until_done_or_gone(request: Request, work: Awaitable[Any]) -> Any:
    """Await ``work``; if the client disconnects first, cancel it (the engine drops its queued inputs)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                raise ClientGone("the client disconnected")
    except asyncio.CancelledError:
        task.cancel()
        raise


async def _prepare(request: Request, fn: Callable[..., Prepared], *args: Any, **kwargs: Any) -> tuple[Prepared, float]:
    """Tokenize off the event loop (the engine serialises tokenizer calls)."""

    def run() -> tuple[Prepared, float]:
        start = time.perf_counter()
        return fn(*args, **kwargs), time.perf_counter() - start

    return await asyncio.get_running_loop().run_in_executor(None, run)


async def _embed(request: Request, engine: Engine, prepared: Prepared, timeout: float | None) -> Embedded:
    return await _until_done_or_gone(request, engine.embed(prepared, timeout=timeout))


def _timing_headers(tokenize: float, result: Embedded) -> dict[str, str]:
    t = result.timings
    return {
        "x-tokenize-time": f"{1000 * tokenize:.2f}",
        "x-queue-time": f"{1000 * t.queue:.2f}",
        "x-inference-time": f"{1000 * t.inference:.2f}",
        "x-total-tokens": str(result.tokens),
    }


def _texts(inputs: str | Sequence[str]) -> list[str]:
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    if not texts:
        raise EmptyInput("no inputs: give at least one")
    if len(texts) > s.MAX_INPUTS:
        raise TooManyInputs(f"{len(texts)} inputs; at most {s.MAX_INPUTS} per request")
    return texts


def _dense_only(engine: Engine, route: str) -> None:
    """Refuse a dense route on a sparse model (as TEI does for SPLADE pooling)."""
    if engine.embedder.output_kind != "dense":
        raise BadRequest(
            f"{route} serves dense vectors; this model gives {engine.embedder.output_kind} ones: use /embed_sparse"
        )


def _role_prompt(engine: Engine, role: str) -> str | None:
    """The model's prompt named ``role`` (query/document) when it has one, else its default prompt."""
    return role if role in engine.embedder.prompts else None


def _encode_row(row: np.ndarray, encoding_format: str) -> Any:
    if encoding_format == "base64":
        little = row.astype(row.dtype.newbyteorder("<"), copy=False) if row.dtype.itemsize > 1 else row
        return base64.b64encode(np.ascontiguousarray(little).tobytes()).decode("ascii")
    return row.tolist()


# -- embedding routes -------------------------------------------------------------------------------
def _add_embedding_routes(api: APIRouter, engine: Engine, model_name: str, timeout: float | None) -> None:
    @api.post(
        "/v1/embeddings",
        response_model=s.EmbeddingResponse,
        tags=["embeddings"],
        summary="OpenAI-compatible embeddings (+ input_type and precision)",
    )
    async def embeddings(body: s.EmbeddingRequest, request: Request) -> Response:
        _dense_only(engine, "/v1/embeddings")
        inp = body.input
        dims = engine.check_dimensions(body.dimensions)
        if isinstance(inp, str):
            inputs: list[Any] = [inp]
        elif inp and isinstance(inp[0], int):
            inputs = [inp]  # one list of token ids
        else:
            inputs = list(inp)
        if not inputs:
            raise EmptyInput("'input' is an empty list: give at least one input")
        if len(inputs) > s.MAX_INPUTS:
            raise TooManyInputs(f"{len(inputs)} inputs; at most {s.MAX_INPUTS} per request")
        if isinstance(inputs[0], str):
            prepared, tok_s = await _prepare(request, engine.prepare_texts, inputs, body.input_type)
        else:
            if body.input_type is not None:
                raise BadRequest(
                    "input_type applies to text inputs; token ids are embedded as given", param="input_type"
                )
            prepared, tok_s = await _prepare(request, engine.prepare_ids, inputs)
        result = await _embed(request, engine, prepared, timeout)
        vectors = engine.quantize(engine.finish(result.vectors, dims), body.precision)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode_row(row, body.encoding_format)}
            for i, row in enumerate(vectors)
        ]
        usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens, "truncated_inputs": result.truncated}
        return JSONResponse(
            {"object": "list", "data": data, "model": model_name, "usage": usage},
            headers=_timing_headers(tok_s, result),
        )

    @api.post("/embed", response_model=list[list[float]], tags=["tei"], summary="TEI-compatible embeddings")
    async def embed(body: s.EmbedRequest, request: Request) -> Response:
        _dense_only(engine, "/embed")
        texts = _texts(body.inputs)
        dims = engine.check_dimensions(body.dimensions)
        prepared, tok_s = await _prepare(request, engine.prepare_texts, texts, body.prompt_name, truncate=body.truncate)
        result = await _embed(request, engine, prepared, timeout)
        vectors = engine.finish(result.vectors, dims, normalize=body.normalize)
        return JSONResponse(vectors.tolist(), headers=_timing_headers(tok_s, result))

    @api.post(
        "/embed_sparse",
        response_model=list[list[s.SparseValue]],
        tags=["tei"],
        summary="TEI-compatible sparse embeddings (a SPLADE model): the non-zero weights of each input",
    )
    async def embed_sparse(body: s.EmbedSparseRequest, request: Request) -> Response:
        if engine.embedder.output_kind != "sparse":
            raise BadRequest(
                f"/embed_sparse needs a sparse model (a SPLADE head); {model_name} gives "
                f"{engine.embedder.output_kind} vectors: use /embed or /v1/embeddings"
            )
        texts = _texts(body.inputs)
        prepared, tok_s = await _prepare(request, engine.prepare_texts, texts, body.prompt_name, truncate=body.truncate)
        result = await _embed(request, engine, prepared, timeout)
        rows = []
        for row in np.asarray(result.vectors):
            nz = np.flatnonzero(row)
            rows.append([{"index": int(j), "value": float(row[j])} for j in nz])
        return JSONResponse(rows, headers=_timing_headers(tok_s, result))

    @api.post(
        "/similarity",
        response_model=list[float],
        tags=["tei"],
        summary="cosine of each sentence to the source sentence",
    )
    async def similarity(body: s.SimilarityRequest, request: Request) -> Response:
        sentences = _texts(body.inputs.sentences)
        prepared, tok_s = await _prepare(
            request, engine.prepare_texts, [body.inputs.source_sentence, *sentences], body.prompt_name
        )
        result = await _embed(request, engine, prepared, timeout)
        unit = engine.finish(result.vectors, normalize=True)
        return JSONResponse((unit[1:] @ unit[0]).tolist(), headers=_timing_headers(tok_s, result))

    @api.post("/rerank", response_model=list[s.RerankHit], tags=["tei"], summary="texts ranked by cosine to the query")
    async def rerank(body: s.RerankRequest, request: Request) -> Response:
        texts = _texts(body.texts)
        if body.top_n is not None:
            request_param(positive_int, "top_n", body.top_n)
        q, q_s = await _prepare(
            request, engine.prepare_texts, [body.query], _role_prompt(engine, "query"), truncate=body.truncate
        )
        d, d_s = await _prepare(
            request, engine.prepare_texts, texts, _role_prompt(engine, "document"), truncate=body.truncate
        )
        qr, dr = await asyncio.gather(_embed(request, engine, q, timeout), _embed(request, engine, d, timeout))
        scores = engine.finish(dr.vectors, normalize=True) @ engine.finish(qr.vectors, normalize=True)[0]
        order = np.argsort(-scores, kind="stable")[: body.top_n or len(texts)]
        with_text = body.return_text if body.return_documents is None else body.return_documents
        hits = [
            {"index": int(i), "score": float(scores[i]), **({"text": texts[i]} if with_text else {})} for i in order
        ]
        return JSONResponse(hits, headers=_timing_headers(q_s + d_s, dr))

    @api.post(
        "/tokenize",
        response_model=list[list[s.Token]],
        tags=["tei"],
        summary="the token ids the server embeds for each text",
    )
    async def tokenize(body: s.TokenizeRequest, request: Request) -> Response:
        texts = _texts(body.inputs)
        prepared, _ = await _prepare(request, engine.prepare_texts, texts, body.prompt_name, truncate=True)
        spans = prepared.offsets or [[None] * len(ids) for ids in prepared.ids]  # from the same tokenizer pass
        tokenizer = engine.embedder.tokenizer
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        out = []
        for ids, offsets in zip(prepared.ids, spans):
            pieces = tokenizer.convert_ids_to_tokens(ids)
            out.append(
                [
                    {
                        "id": int(i),
                        "text": str(p),
                        "special": i in special,
                        "start": span[0] if span else None,
                        "stop": span[1] if span else None,
                    }
                    for i, p, span in zip(ids, pieces, offsets)
                    if body.add_special_tokens or i not in special
                ]
            )
        return JSONResponse(out)


# -- search -----------------------------------------------------------------------------------------
def _add_search_routes(
    api: APIRouter, engine: Engine, model_name: str, indexes: Mapping[str, Any], timeout: float | None
) -> None:
    @api.post(
        "/v1/search",
        response_model=s.SearchResponse,
        tags=["search"],
        summary="top-k documents of a loaded index for each query (with rescoring)",
    )
    async def search(body: s.SearchRequest, request: Request) -> Response:
        name = body.index
        if not indexes:
            raise NotFound(
                "this server has no index loaded, so /v1/search has nothing to search: start it with "
                "`embedlab serve MODEL --index DIR` (an index from `embedlab index build`)"
            )
        if name is None:
            if len(indexes) != 1:
                raise BadRequest(
                    f"name the index ('index' in the body): this server has {len(indexes)}: "
                    f"{', '.join(sorted(indexes))}",
                    param="index",
                )
            name = next(iter(indexes))
        index = indexes.get(name)
        if index is None:
            raise NotFound(f"unknown index {name!r}; loaded: {', '.join(sorted(indexes)) or 'none'}")
        queries = _texts(body.query)
        request_param(positive_int, "k", body.k)
        request_param(non_negative_int, "rescore", body.rescore)
        prompt = index.model.get("query_prompt")
        prepared, tok_s = await _prepare(request, engine.prepare_texts, queries, prompt)
        result = await _embed(request, engine, prepared, timeout)
        vectors = engine.finish(result.vectors)
        loop = asyncio.get_running_loop()
        if isinstance(index, HybridServing):
            ids, scores = await loop.run_in_executor(None, lambda: _hybrid_search(index, queries, vectors, body))
        else:
            if body.fusion is not None or body.fusion_weight is not None:
                raise BadRequest(
                    f"fusion needs a hybrid index (dense + lexical parts); {name!r} is dense", param="fusion"
                )
            k = min(body.k, len(index))
            ids, scores = await loop.run_in_executor(None, lambda: index.search(vectors, k=k, rescore=body.rescore))
        texts = dict(zip(index.ids, index.texts)) if index.texts is not None else {}
        data = [
            {"query": q, "hits": [{"id": d, "score": float(sc), "text": texts.get(d)} for d, sc in zip(row, srow)]}
            for q, row, srow in zip(queries, ids, scores)
        ]
        return JSONResponse(
            {"object": "list", "index": name, "model": model_name, "data": data}, headers=_timing_headers(tok_s, result)
        )

    @api.get("/v1/models", response_model=s.ModelList, tags=["status"], summary="the served model and its indexes")
    async def models(request: Request) -> Response:
        emb = engine.embedder
        info = {
            "id": model_name,
            "object": "model",
            "created": request.app.state.started,
            "owned_by": "embedlab",
            "dimensions": engine.default_dim,
            "max_input_tokens": engine.max_input_tokens,
            "normalize": engine.normalize,
            "prompts": dict(emb.prompts),
            "default_prompt_name": emb.default_prompt_name,
            "indexes": [
                {"name": n, "count": len(ix), "codec": ix.codec.spec, "dim": ix.dim, "has_texts": ix.texts is not None}
                for n, ix in indexes.items()
            ],
        }
        return JSONResponse({"object": "list", "data": [info]})

    @api.get(
        "/v1/quantization/int8",
        response_model=s.Int8Ranges,
        tags=["embeddings"],
        summary="the per-dimension ranges that decode precision=int8 output at a width",
    )
    async def int8_ranges(dimensions: Optional[int] = None) -> Response:
        dim = engine.check_dimensions(dimensions)
        if engine.quantizer is None:
            raise Unavailable("int8 output is not available: the model gave NaN/inf on the calibration texts")
        ranges = await asyncio.get_running_loop().run_in_executor(None, engine.quantizer.int8_ranges, dim)
        vmin, vdiff = ranges.lo, ranges.diff
        return JSONResponse(
            {
                "dimensions": dim,
                "vmin": vmin.tolist(),
                "vdiff": vdiff.tolist(),
                "decode": "x[i] = vmin[i] + (q[i] + 128 + 0.5) / 255 * vdiff[i]",
            }
        )


# -- status routes (never behind the API key) -------------------------------------------------------
def _add_status_routes(app: FastAPI, engine: Engine) -> None:
    status_responses = {503: {"model": s.ErrorResponse}}

    @app.get(
        "/health",
        response_model=s.Status,
        responses=status_responses,
        tags=["status"],
        summary="200 while the model worker runs and makes progress; 503 when it is dead or stuck",
    )
    async def health() -> Response:
        ok, reason = engine.health()
        if not ok:
            raise Unavailable(f"unhealthy: {reason}")
        return JSONResponse({"status": "ok"})

    @app.get(
        "/ready",
        response_model=s.Status,
        responses=status_responses,
        tags=["status"],
        summary="200 once warmed up, healthy and not shutting down",
    )
    async def ready() -> Response:
        ok, reason = engine.health()
        if engine.draining:
            raise Unavailable("not ready: shutting down")
        if not ok or not engine.ready:
            raise Unavailable(f"not ready: {reason if not ok else 'warming up'}")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(engine.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("embedlab.serve").joinpath("static/index.html").read_text(encoding="utf-8"))


# -- errors -----------------------------------------------------------------------------------------
def _install_error_handlers(app: FastAPI) -> None:
    async def embedlab_error(request: Request, exc: Exception) -> Response:
        status, body, headers = exception_body(exc)
        if status >= 500 and status != 503:
            log.error("request %s failed: %s", request.url.path, exc)
        return JSONResponse(body, status_code=status, headers=headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(error_body("the body is not valid JSON", 400, code="invalid_json"), status_code=400)
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = loc[0] if loc else None
        where = f"'{'.'.join(loc)}': " if loc else ""
        message = f"{where}{first.get('msg', 'invalid request')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problems)"
        return JSONResponse(error_body(message, 422, code="invalid_value", param=param), status_code=422)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(
            error_body(str(exc.detail), exc.status_code, code=code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        status, body, _ = exception_body(exc)
        return JSONResponse(body, status_code=status)

    app.add_exception_handler(EmbedlabError, embedlab_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


#: The routes that run the model: admitted by the engine's RequestGate (expected wait) before their body is read.
_MODEL_ROUTES = frozenset({"/v1/embeddings", "/embed", "/embed_sparse", "/similarity", "/rerank", "/v1/search"})


class _Gate:
    """ASGI middleware: 503 for new requests while draining; 429 for a model route whose expected wait is
    over the bound (the engine's RequestGate, before the body is parsed); request count and latency per route."""

    def __init__(self, app: Any, engine: Engine, request_timeout: float | None = None) -> None:
        self.app, self.engine, self.request_timeout = app, engine, request_timeout

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.engine.metrics
        path = scope.get("path", "")
        if self.engine.draining and path not in _OPEN_PATHS:
            await _refuse(send, 503, "the server is shutting down: it accepts no new requests", "unavailable")
            metrics.requests.labels("draining", "503").inc()
            return
        length = dict(scope.get("headers") or ()).get(b"content-length", b"0")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            await _refuse(send, 413, f"the body is larger than {MAX_BODY_BYTES >> 20} MiB", "input_too_long")
            metrics.requests.labels("too_large", "413").inc()
            return
        gated = path in _MODEL_ROUTES and scope.get("method") == "POST"
        if gated:
            try:
                self.engine.gate.enter(self.request_timeout)
            except Overloaded as exc:
                await _read_body(receive)  # so the connection stays usable (keep-alive)
                await _refuse(
                    send,
                    429,
                    str(exc),
                    "overloaded",
                    close=False,
                    headers=[(b"retry-after", str(exc.retry_after).encode())],
                )
                metrics.rejected.inc()
                metrics.requests.labels(path, "429").inc()
                return
        status = [500]

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            if gated:
                self.engine.gate.leave(answered=status[0] == 200)
            route = scope.get("route")
            label = getattr(route, "path", None) or "other"
            metrics.requests.labels(label, str(status[0])).inc()
            metrics.latency.labels(label).observe(time.perf_counter() - start)


async def _refuse(
    send: Callable,
    status: int,
    message: str,
    code: str,
    *,
    close: bool = True,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    body = json.dumps(error_body(message, status, code=code)).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": head + ([(b"connection", b"close")] if close else []),
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Callable) -> None:
    """Consume a request's body (bounded by MAX_BODY_BYTES at the gate) without keeping it."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _hybrid_search(index: HybridServing, queries: list[str], vectors: np.ndarray, body: Any) -> tuple[list, list]:
    from embedlab.index.hybrid import DEFAULT_DEPTH, fuse_hits

    depth = max(body.k, int(index.fusion.get("depth", DEFAULT_DEPTH)))
    d_ids, d_scores = index.dense.search(vectors, k=min(depth, len(index.dense)), rescore=body.rescore)
    dense = [(list(row), np.asarray(sc, dtype=np.float64)) for row, sc in zip(d_ids, d_scores)]
    lexical = index.lexical.search(queries, min(depth, len(index.lexical)))
    try:
        hits = fuse_hits(dense, lexical, body.k, index.fusion, body.fusion, body.fusion_weight)
    except ConfigError as exc:
        raise BadRequest(str(exc), param="fusion") from None
    return [h[0] for h in hits], [h[1] for h in hits]


def load_indexes(specs: Sequence[str]) -> dict[str, Any]:
    """``NAME=DIR`` or ``DIR`` (name = the directory's name) -> loaded indexes (dense, or hybrid: a dense part
    searched with the served model plus a BM25 or sparse part); names must be unique."""
    from embedlab.index import VectorIndex
    from embedlab.index.hybrid import index_kind, open_hybrid_parts

    out: dict[str, Any] = {}
    for spec in specs:
        name, sep, where = spec.partition("=")
        if not sep or Path(spec).exists():
            name, where = Path(spec).name, spec
        if not name:
            raise ConfigError(f"--index {spec!r}: give DIR or NAME=DIR")
        if name in out:
            raise ConfigError(f"two indexes are named {name!r}: use NAME=DIR to tell them apart")
        kind = index_kind(where)
        if kind == "hybrid":
            out[name] = HybridServing(*open_hybrid_parts(where, _load_sparse_model))
        elif kind == "dense":
            out[name] = VectorIndex.load(where)
        else:
            raise ConfigError(
                f"--index {spec}: a {kind} index; the server searches dense and hybrid indexes "
                "(a sparse model is served with /embed_sparse; search a sparse or BM25 index with `embedlab search`)"
            )
    return out


def _load_sparse_model(record: dict[str, Any]) -> Any:
    from embedlab.models import Embedder

    return Embedder.from_pretrained(record["name"], pooling=record.get("pooling"))


__all__ = ["ClientGone", "create_app", "load_indexes"]
