"""Serving: an OpenAI- and TEI-compatible HTTP API over one Embedder (router -> engine -> one worker).

    from embedlab.serve import Engine, create_app, BackgroundServer
    app = create_app(Engine(embedlab.load("minilm-l6"), dtype="fp32"), model_name="minilm-l6")
    uvicorn.run(app, host="127.0.0.1", port=8080)      # or: embedlab serve minilm-l6

See docs/serving.md.
"""

from embedlab.serve.app import create_app, load_indexes
from embedlab.serve.engine import Engine, Prepared, Quantizer
from embedlab.serve.server import BackgroundServer, build_app, run_app, serve

__all__ = [
    "BackgroundServer",
    "Engine",
    "Prepared",
    "Quantizer",
    "build_app",
    "create_app",
    "load_indexes",
    "run_app",
    "serve",
]
