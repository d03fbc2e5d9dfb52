"""Request errors: OpenAI-shaped bodies with the documented statuses, never a 500."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.serve.conftest import TEXTS, running


def _error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"input": []}, 400, "empty_input"),
        ({"input": ["x"] * 2049}, 400, "too_many_inputs"),
        ({"input": "x", "dimensions": 33}, 400, "invalid_value"),
        ({"input": "x", "dimensions": 0}, 400, "invalid_value"),
        ({"input": [[]]}, 400, "empty_input"),
        ({"input": [10**9]}, 422, "invalid_input"),
        ({"input": 5}, 422, "invalid_value"),
        ({"input": ["a", 1]}, 422, "invalid_value"),
        ({"input": [True]}, 422, "invalid_value"),
        ({"input": "x", "encoding_format": "hex"}, 422, "invalid_value"),
        ({"input": "x", "precision": "int4"}, 422, "invalid_value"),
        ({"input": [1, 2], "input_type": "query"}, 400, "invalid_value"),
        ({}, 422, "invalid_value"),
    ],
)
def test_bad_requests(server, body, status, code):
    err = _error(httpx.post(server.url + "/v1/embeddings", json=body), status, code)
    assert err["type"] == "invalid_request_error"


def test_invalid_json_and_unknown_routes(server):
    _error(
        httpx.post(server.url + "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "invalid_json",
    )
    _error(httpx.get(server.url + "/v1/nothing-here"), 404, "not_found")
    _error(httpx.get(server.url + "/v1/embeddings"), 405, "method_not_allowed")
    err = _error(httpx.post(server.url + "/rerank", json={"query": "x", "texts": ["a"], "top_n": 0}), 400)
    assert err["message"] == "top_n must be a positive integer; got 0" and err["param"] == "top_n"
    dims = _error(httpx.post(server.url + "/v1/embeddings", json={"input": "x", "dimensions": 0}), 400)
    assert dims["message"] == "dimensions must be an integer in 1..32; got 0" and dims["param"] == "dimensions"
    _error(
        httpx.post(server.url + "/similarity", json={"inputs": {"source_sentence": "x", "sentences": []}}),
        400,
        "empty_input",
    )


def test_oversized_body_is_refused_before_it_is_read(server):
    import json
    import socket

    from embedlab.serve.app import MAX_BODY_BYTES

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n{}" % (MAX_BODY_BYTES + 1)
        )
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"413", raw
    assert json.loads(body)["error"]["code"] == "input_too_long"


def test_empty_string_is_embedded_as_the_model_does(server, tiny_emb):
    r = httpx.post(server.url + "/v1/embeddings", json={"input": ["", "the cat"]})
    assert r.status_code == 200
    got = np.array([d["embedding"] for d in r.json()["data"]])
    assert np.abs(got - tiny_emb.encode(["", "the cat"])).max() < 1e-5
    assert r.json()["usage"]["prompt_tokens"] == 2 + 4  # [CLS] [SEP] and [CLS] the cat [SEP]


def test_long_inputs_truncate_or_413(tiny_emb):
    long = " ".join(["cat"] * 100)  # 102 tokens, over the tiny model's 64
    with running(tiny_emb, max_input_tokens=10) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"input": [long, "the cat", " ".join(["dog"] * 8)]})
        assert r.status_code == 200
        assert r.json()["usage"]["truncated_inputs"] == 1  # 8 words + 2 specials = 10 tokens: not cut
        got = np.array(r.json()["data"][0]["embedding"])
        assert np.abs(got - tiny_emb.with_options(max_length=10).encode([long])[0]).max() < 1e-5
        assert r.json()["usage"]["prompt_tokens"] == 10 + 4 + 10
        # the TEI route lets a request refuse truncation
        _error(httpx.post(srv.url + "/embed", json={"inputs": [long], "truncate": False}), 413, "input_too_long")
    with running(tiny_emb, truncate=False) as srv:
        err = _error(httpx.post(srv.url + "/v1/embeddings", json={"input": ["the cat", long]}), 413, "input_too_long")
        assert "input 1" in err["message"]
        _error(httpx.post(srv.url + "/v1/embeddings", json={"input": [[6] * 65]}), 413, "input_too_long")
        ok = httpx.post(srv.url + "/v1/embeddings", json={"input": [" ".join(["cat"] * 62)]})  # exactly 64 tokens
        assert ok.status_code == 200 and ok.json()["usage"]["truncated_inputs"] == 0


def test_api_key(tiny_emb):
    from openai import AuthenticationError, OpenAI

    with running(tiny_emb, api_key="s3cret") as srv:
        err = _error(httpx.post(srv.url + "/v1/embeddings", json={"input": "x"}), 401, "invalid_api_key")
        assert err["type"] == "authentication_error"
        assert httpx.post(srv.url + "/v1/embeddings", json={"input": "x"}).headers["www-authenticate"] == "Bearer"
        _error(
            httpx.post(srv.url + "/v1/embeddings", json={"input": "x"}, headers={"authorization": "Bearer s3cre"}), 401
        )
        _error(httpx.get(srv.url + "/v1/models", headers={"authorization": "Basic s3cret"}), 401)
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0).embeddings.create(model="t", input="x")
        ok = OpenAI(base_url=srv.url + "/v1", api_key="s3cret", max_retries=0).embeddings.create(model="t", input=TEXTS)
        assert len(ok.data) == len(TEXTS)
        assert httpx.get(srv.url + "/health").status_code == 200  # health, metrics and the page stay open
        assert httpx.get(srv.url + "/metrics").status_code == 200


def test_read_api_key(tmp_path):
    from embedlab.errors import ConfigError
    from embedlab.serve.server import read_api_key

    (tmp_path / "key").write_text("  abc\n")
    assert read_api_key(tmp_path / "key") == "abc"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError):
        read_api_key(tmp_path / "empty")
    with pytest.raises(ConfigError):
        read_api_key(tmp_path / "missing")


def test_status_mapping_reads_the_class_attribute():
    from embedlab.errors import ConfigError, EmbedlabError, ModelNotFoundError, Overloaded
    from embedlab.serve.errors import exception_body, status_of

    assert status_of(ConfigError("x")) == 422 and status_of(ModelNotFoundError("x")) == 404
    assert status_of(EmbedlabError("x")) == 422 and status_of(ValueError("x")) == 500
    status, body, headers = exception_body(Overloaded("full", retry_after=7))
    assert status == 429 and headers["Retry-After"] == "7" and body["error"]["code"] == "overloaded"
    status, body, _ = exception_body(RuntimeError("secret detail"))
    assert status == 500 and "secret" not in body["error"]["message"]
