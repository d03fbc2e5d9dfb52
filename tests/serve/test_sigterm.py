"""`embedlab serve` as a real process: SIGTERM while a request is in flight -> it completes, new ones are
refused, the process exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.serve.conftest import metric


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_drains_in_flight_request_then_exits_0(tiny_bert, tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "server.log", "w")
    # max-batch-tokens 8: one input per forward pass, so 1,500 inputs keep the worker busy for a while
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embedlab.cli",
            "serve",
            str(tiny_bert),
            "--port",
            str(port),
            "--dtype",
            "fp32",
            "--max-batch-tokens",
            "8",
            "--max-queue-tokens",
            "100000",
            "--model-name",
            "tiny",
            "--log-level",
            "info",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        end = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < end, "the server did not become ready"
            time.sleep(0.2)
        texts = ["the cat sat on the mat"] * 1500
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.post, url + "/v1/embeddings", json={"input": texts}, timeout=120)
            while metric(httpx.get(url + "/metrics").text, "embedlab_batch_items_count") < 20:  # running
                assert not in_flight.done(), in_flight.result().text
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            assert not in_flight.done()  # the signal came while the request was being embedded
            time.sleep(0.3)
            try:
                late = httpx.post(url + "/v1/embeddings", json={"input": "x"}, timeout=5)
                assert late.status_code == 503, late.text
            except httpx.TransportError:
                pass  # refused: the listening socket is closed
            r = in_flight.result()
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]) == len(texts)
        assert proc.wait(timeout=60) == 0, (tmp_path / "server.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
