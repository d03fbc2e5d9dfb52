"""Real servers (uvicorn on a thread, 127.0.0.1, any free port) over the tiny random BERT."""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

import pytest

TEXTS = [
    "the cat sat on the mat",
    "a dog ran fast in the house",
    "the big red car",
    "why is the sky blue",
    "she read a book by the river",
    "code data model text",
    "the moon and the star",
    "a small green tree",
]


@pytest.fixture(scope="session")
def tiny_emb(tiny_bert):
    import embedlab

    return embedlab.load(str(tiny_bert))


@pytest.fixture(scope="session")
def prompted_emb(tiny_bert):
    """The tiny BERT with named prompts (words of its vocabulary) and a default prompt."""
    import embedlab

    return embedlab.load(
        str(tiny_bert), prompts={"query": "find similar ", "document": "document "}, default_prompt_name="document"
    )


@contextlib.contextmanager
def running(
    emb: Any,
    *,
    model_name: str = "tiny",
    indexes: dict | None = None,
    api_key: str | None = None,
    request_timeout: float | None = 30.0,
    **engine_options: Any,
) -> Iterator[Any]:
    """A started server; yields the BackgroundServer (``.url``, ``.app.state.engine``)."""
    from embedlab.serve import BackgroundServer, Engine, create_app

    engine_options.setdefault("dtype", "fp32")
    engine = Engine(emb, **engine_options)
    app = create_app(engine, model_name=model_name, indexes=indexes, api_key=api_key, request_timeout=request_timeout)
    with BackgroundServer(app) as srv:
        yield srv


@pytest.fixture(scope="module")
def server(tiny_emb):
    with running(tiny_emb) as srv:
        yield srv


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return 0.0
