"""Running the app: ``serve()`` (what ``embedlab serve`` calls), ``run_app()`` with a graceful SIGTERM, and
``BackgroundServer`` (a real uvicorn server on a thread, for tests and benchmarks).

SIGTERM (and Ctrl-C): the engine stops admitting (503 for new requests), uvicorn closes the listening
socket and waits for in-flight requests (at most ``--request-timeout`` + 5 s), the app's lifespan drains
and stops the engine, and the process exits 0 (130 after Ctrl-C).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import uvicorn

from embedlab.errors import ConfigError

log = logging.getLogger(__name__)


class _DrainingServer(uvicorn.Server):
    """A uvicorn server that tells the engine to stop admitting as soon as a shutdown signal arrives."""

    def __init__(self, config: uvicorn.Config, on_exit_signal: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit_signal = on_exit_signal

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._on_exit_signal()
        super().handle_exit(sig, frame)


def _server(app: Any, host: str, port: int, log_level: str, graceful_timeout: float | None) -> _DrainingServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=int(graceful_timeout) if graceful_timeout else None,
    )
    return _DrainingServer(config, app.state.engine.begin_drain)


def run_app(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    graceful_timeout: float | None = 35.0,
) -> None:
    """Serve ``app`` (from :func:`~embedlab.serve.create_app`) until SIGTERM/SIGINT, then drain and return
    (SIGTERM: exit status 0)."""

    def exit_after_drain(code: int) -> Callable[[int, Any], None]:
        def handler(sig: int, frame: Any) -> None:
            raise SystemExit(code)

        return handler

    # uvicorn re-raises the shutdown signal once it has drained; these handlers turn that into a clean exit
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, exit_after_drain(0)),
        signal.SIGINT: signal.signal(signal.SIGINT, exit_after_drain(130)),
    }
    try:
        _server(app, host, port, log_level, graceful_timeout).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def read_api_key(path: str | Path | None) -> str | None:
    if path is None:
        return None
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc.strerror}") from None
    if not key:
        raise ConfigError(f"the API key file {path} is empty")
    return key


def build_app(
    model: str | Any,
    *,
    indexes: Sequence[str] = (),
    dtype: str = "auto",
    runtime: str | None = None,
    device: str | None = None,
    max_batch_tokens: int | None = None,
    max_batch_size: int | None = None,
    max_queue_tokens: int | None = None,
    max_queue_wait: float | None = None,
    max_input_tokens: int | None = None,
    truncate: bool = True,
    api_key: str | None = None,
    request_timeout: float | None = 30.0,
    model_name: str | None = None,
    stall_timeout: float = 60.0,
    prefetch: bool | None = None,
    batch_overhead_tokens: int | None = None,
    on_forward: Callable[[int], None] | None = None,
) -> Any:
    """Load ``model`` (anything ``embedlab.load`` takes, or an Embedder) and ``indexes`` (``DIR`` or
    ``NAME=DIR``) and return the app. The engine starts with the app's lifespan."""
    import torch

    import embedlab
    from embedlab.serve.app import create_app, load_indexes
    from embedlab.serve.engine import Engine

    emb = embedlab.load(model) if isinstance(model, (str, Path)) else model
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    engine = Engine(
        emb,
        dtype=dtype,
        runtime=runtime,
        device=device,
        max_batch_tokens=max_batch_tokens,
        max_batch_size=max_batch_size,
        max_queue_tokens=max_queue_tokens,
        max_queue_wait=max_queue_wait,
        max_input_tokens=max_input_tokens,
        truncate=truncate,
        stall_timeout=stall_timeout,
        prefetch=prefetch,
        batch_overhead_tokens=batch_overhead_tokens,
        on_forward=on_forward,
    )
    name = model_name or (str(model) if isinstance(model, (str, Path)) else "embedlab")
    return create_app(
        engine, model_name=name, indexes=load_indexes(indexes), api_key=api_key, request_timeout=request_timeout
    )


def serve(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key_file: str | Path | None = None,
    log_level: str = "info",
    **options: Any,
) -> None:
    """``embedlab serve``: build the app (see :func:`build_app` for ``options``) and run it until SIGTERM."""
    app = build_app(model, api_key=read_api_key(api_key_file), **options)
    timeout = options.get("request_timeout") or 30.0
    run_app(app, host=host, port=port, log_level=log_level, graceful_timeout=timeout + 5.0)


class BackgroundServer:
    """A real uvicorn server for ``app`` on a daemon thread (port 0: any free port)::

        with BackgroundServer(app) as srv:
            httpx.post(srv.url + "/v1/embeddings", json={"input": "hi"})

    ``drain()`` does what SIGTERM does (stop admitting, finish in-flight requests, stop)."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        graceful_timeout: float | None = 30.0,
    ) -> None:
        self.app = app
        self.server = _server(app, host, port, log_level, graceful_timeout)
        self.host = host
        self.thread = threading.Thread(target=self.server.run, name="embedlab-uvicorn", daemon=True)

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 120.0) -> "BackgroundServer":
        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def drain(self) -> None:
        self.server.handle_exit(signal.SIGTERM, None)

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["BackgroundServer", "build_app", "read_api_key", "run_app", "serve"]
