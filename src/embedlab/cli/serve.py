"""``embedlab serve``: the HTTP server (OpenAI and TEI routes, search over indexes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli._common import (
    DType,
    ModelArg,
    Runtime,
    RuntimeOpt,
    check_model,
    input_file,
)


def serve(
    model: ModelArg,
    index: Annotated[
        list[str] | None,
        typer.Option(
            "--index", help="an index directory to search (name = its directory name, or NAME=DIR); repeatable"
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="the address to bind (0.0.0.0 exposes the server to the network)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="the TCP port (0: any free port)")] = 8080,
    dtype: Annotated[
        DType, typer.Option(help="auto = bf16 where the hardware runs it natively, else fp32")
    ] = DType.auto,
    runtime: RuntimeOpt = Runtime.torch,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:N] (default: cuda if available)")] = None,
    max_batch_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="padded tokens (rows x longest) per forward pass; default 512 on CPU, 32768 on GPU"),
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(min=1, help="rows per forward pass; default 64 on CPU, 512 on GPU")
    ] = None,
    batch_overhead_tokens: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="a forward pass's fixed cost in padded tokens, which sets how finely inputs are split by length; default: measured at start-up",
        ),
    ] = None,
    max_queue_tokens: Annotated[
        int | None,
        typer.Option(
            min=1, help="tokens admitted and not yet answered before new requests get 429; default 32 batches"
        ),
    ] = None,
    max_queue_wait: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="admission: the longest a new request may expect to wait behind the admitted work (s); longer gets 429 with Retry-After; default 1, at most --request-timeout",
        ),
    ] = None,
    max_input_tokens: Annotated[
        int | None, typer.Option(min=1, help="tokens per input; default the model's max length")
    ] = None,
    truncate: Annotated[
        bool, typer.Option("--truncate/--no-truncate", help="cut longer inputs (usage reports how many), or answer 413")
    ] = True,
    api_key_file: Annotated[
        Path | None, typer.Option(help="a file holding the key clients send as 'Authorization: Bearer KEY'")
    ] = None,
    request_timeout: Annotated[
        float, typer.Option(min=0.001, help="seconds a request may wait for the model, then 503")
    ] = 30.0,
    model_name: Annotated[
        str | None, typer.Option(help="the model id shown in /v1/models and responses (default: MODEL)")
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="uvicorn's log level: critical, error, warning, info, debug or trace")
    ] = "info",
) -> None:
    """Serve MODEL over HTTP: OpenAI /v1/embeddings, TEI /embed /similarity /rerank /tokenize, /v1/search over
    --index directories, /health, /metrics and a search page at / (see docs/serving.md). SIGTERM drains."""
    from embedlab.validation import choice, positive_number

    positive_number("--request-timeout", request_timeout)
    if max_queue_wait is not None:
        positive_number("--max-queue-wait", max_queue_wait)
    choice("--log-level", log_level.lower(), ("critical", "error", "warning", "info", "debug", "trace"))
    input_file(api_key_file, "--api-key-file")
    for spec in index or []:
        _, sep, where = spec.partition("=")
        input_file(Path(where if sep else spec), "--index")
    check_model(model)  # every flag and path is checked before the model loads
    from embedlab.serve import serve as run_server

    run_server(
        model,
        indexes=index or [],
        host=host,
        port=port,
        dtype=dtype.value,
        device=device,
        runtime=runtime.value,
        max_batch_tokens=max_batch_tokens,
        max_batch_size=max_batch_size,
        batch_overhead_tokens=batch_overhead_tokens,
        max_queue_tokens=max_queue_tokens,
        max_queue_wait=max_queue_wait,
        max_input_tokens=max_input_tokens,
        truncate=truncate,
        api_key_file=api_key_file,
        request_timeout=request_timeout,
        model_name=model_name or model,
        log_level=log_level.lower(),
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
