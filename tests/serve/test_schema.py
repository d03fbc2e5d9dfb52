"""Schemathesis against the served OpenAPI schema: for generated valid and invalid requests to every
operation, no 5xx, and every status, content type and body is the one the schema declares."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serve.conftest import TEXTS, running

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_server(tiny_emb, tmp_path_factory):
    from embedlab.index import VectorIndex
    from embedlab.serve import load_indexes

    root = tmp_path_factory.mktemp("schema-index")
    VectorIndex.build(
        tiny_emb.encode(TEXTS),
        [f"d{i}" for i in range(len(TEXTS))],
        "float32",
        texts=TEXTS,
        model={"fingerprint": tiny_emb.fingerprint()},
    ).save(root / "docs")
    with running(
        tiny_emb, indexes=load_indexes([str(root / "docs")]), max_input_tokens=32, max_queue_tokens=1 << 20
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_schema(fuzzed_server):
    return schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_response_matches_the_schema(case):
    case.call_and_validate(checks=CHECKS, timeout=30)


def test_schema_lists_the_routes(fuzzed_server):
    import httpx

    paths = httpx.get(fuzzed_server.url + "/openapi.json").json()["paths"]
    assert {
        "/v1/embeddings",
        "/embed",
        "/similarity",
        "/rerank",
        "/tokenize",
        "/v1/search",
        "/v1/models",
        "/health",
        "/ready",
    } <= set(paths)
    assert "429" in paths["/v1/embeddings"]["post"]["responses"]
