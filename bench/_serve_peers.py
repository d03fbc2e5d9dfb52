"""The servers bench/serve_load.py measures, each started as its own process on its own 127.0.0.1 port.

* ``embedlab``: ``embedlab serve MODEL --dtype fp32``.
* ``handwritten``: the server a user would write by hand, FastAPI + ``SentenceTransformer.encode`` per
  request (the app below; run it with ``python bench/_serve_peers.py handwritten --model DIR --port N``).
  The endpoint is a plain ``def``, as FastAPI advises for blocking code, so requests run on FastAPI's
  thread pool and several ``encode`` calls may run at once.
* ``infinity``: infinity-emb 0.0.78 (torch engine) in its own venv, ``bench/.venv-infinity`` (it needs
  numpy < 2 and sentence-transformers < 4, which embedlab's venv cannot hold). :func:`ensure_infinity`
  creates the venv on first use.

Every server gets the same environment: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = the bench's
``--threads``, ``HF_HUB_OFFLINE=1``, no telemetry.

No ``from __future__ import annotations`` here: FastAPI must see the real class of the handwritten
endpoint's body model, which is local to :func:`handwritten_app`.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
INFINITY_SPEC = "infinity-emb[server,torch]==0.0.78"
INFINITY_VENV = REPO / "bench" / ".venv-infinity"


# -- peer (a): the hand-written server ---------------------------------------------------------------
def handwritten_app(model_dir: str, served_name: str = "minilm-l6"):  # noqa: ANN201
    """FastAPI + SentenceTransformer, written the way the sentence-transformers and FastAPI docs show."""
    from fastapi import FastAPI
    from pydantic import BaseModel
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(["warm up"])
    app = FastAPI()

    class EmbeddingRequest(BaseModel):
        input: str | list[str]
        model: str | None = None
        encoding_format: str | None = None

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    def embeddings(req: EmbeddingRequest) -> dict:
        texts = [req.input] if isinstance(req.input, str) else req.input
        vectors = model.encode(texts, normalize_embeddings=True)
        return {
            "object": "list",
            "model": served_name,
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }

    return app


# -- infinity's venv ---------------------------------------------------------------------------------
def ensure_infinity(
    venv: Path = INFINITY_VENV, *, log: Callable[[str], None] = print, timeout: float = 1800.0
) -> tuple[Path | None, str]:
    """(path of infinity_emb, "") once ``venv`` holds INFINITY_SPEC, else (None, why). Creates the venv and
    pip-installs into it when needed (a few minutes; torch pinned to embedlab's torch build where pip
    can find it, so the CPU wheel is used)."""
    exe = venv / "bin" / "infinity_emb"
    marker = venv / ".embedlab-spec"
    if exe.exists() and marker.exists() and marker.read_text().strip() == INFINITY_SPEC:
        return exe, ""
    log(
        f"creating {venv.relative_to(REPO) if venv.is_relative_to(REPO) else venv} with {INFINITY_SPEC} "
        "(first run only; a few minutes)"
    )
    try:
        import torch

        torch_pin = f"torch=={torch.__version__}"
    except ImportError:
        torch_pin = "torch"
    base = getattr(sys, "_base_executable", None) or sys.executable
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True, text=True, timeout=300)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        last = ""
        for extra in ([torch_pin], []):  # embedlab's torch build first (the CPU wheel), then any torch
            done = subprocess.run(pip + [INFINITY_SPEC, *extra], capture_output=True, text=True, timeout=timeout)
            if done.returncode == 0:
                break
            last = (done.stderr or done.stdout).strip().splitlines()
        else:
            return None, "pip could not install it: " + " ".join(last[-2:])[-300:]
    except subprocess.TimeoutExpired:
        return None, f"pip did not finish within {timeout:.0f} s"
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"could not create the venv: {exc}"
    if not exe.exists():
        return None, f"{exe} is missing after the install"
    marker.write_text(INFINITY_SPEC + "\n")
    return exe, ""


# -- processes ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the bench process dies, so no server outlives the bench."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def server_env(threads: int) -> dict[str, str]:
    """The servers' environment: ``threads`` > 0 pins OMP/MKL threads; 0 removes those variables, so each
    server uses its library's default (torch: one thread per physical core), as a user's would."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    if threads > 0:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        INFINITY_ANONYMOUS_USAGE_STATS="0",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Server:
    """One server process on 127.0.0.1:port (stdout and stderr go to ``log_path``)."""

    name: str
    cmd: list[str]
    port: int
    health_path: str
    log_path: Path
    threads: int
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=REPO,
                env=server_env(self.threads),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Seconds until ``health_path`` answered 200; raises RuntimeError (with the log's tail) otherwise."""
        import httpx

        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + self.health_path, timeout=2.0).status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} was not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def rss_bytes(self) -> int | None:
        """VmRSS of the server process, from /proc/PID/status."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, AssertionError):
            return None
        return None

    def stop(self, timeout: float = 45.0) -> None:
        """SIGTERM this server's process, then SIGKILL it if it has not exited after ``timeout`` s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def embedlab_server(
    model: str,
    port: int,
    log_dir: Path,
    threads: int,
    *,
    max_queue_tokens: int | None = None,
    name: str = "embedlab",
    extra: Sequence[str] = (),
) -> Server:
    exe = Path(sys.executable).with_name("embedlab")
    head = [str(exe)] if exe.exists() else [sys.executable, "-c", "from embedlab.cli import main; main()"]
    cmd = head + ["serve", model, "--dtype", "fp32", "--device", "cpu", "--port", str(port), "--log-level", "warning"]
    cmd += list(extra)
    if max_queue_tokens:
        cmd += ["--max-queue-tokens", str(max_queue_tokens)]
    return Server(name, cmd, port, "/ready", log_dir / f"{name}.log", threads)


def handwritten_server(model_dir: Path, port: int, log_dir: Path, threads: int) -> Server:
    cmd = [sys.executable, str(Path(__file__).resolve()), "handwritten", "--model", str(model_dir), "--port", str(port)]
    return Server("handwritten", cmd, port, "/health", log_dir / "handwritten.log", threads)


def infinity_server(exe: Path, model_dir: Path, port: int, log_dir: Path, threads: int) -> Server:
    """infinity's torch engine at fp32 on CPU. BetterTransformer needs optimum (not installed) and
    torch.compile(dynamic=True) recompiles per shape on CPU, so both are off; the vector disk cache is off
    (the bench repeats texts, and a cache would answer from disk)."""
    cmd = [
        str(exe),
        "v2",
        "--model-id",
        str(model_dir),
        "--served-model-name",
        "minilm-l6",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--no-bettertransformer",
        "--no-compile",
        "--no-vector-disk-cache",
        "--url-prefix",
        "/v1",
        "--log-level",
        "warning",
    ]
    return Server("infinity", cmd, port, "/health", log_dir / "infinity.log", threads)


def _main() -> None:
    parser = argparse.ArgumentParser(description="run a peer server (used by bench/serve_load.py)")
    sub = parser.add_subparsers(dest="which", required=True)
    hw = sub.add_parser("handwritten", help="FastAPI + SentenceTransformer.encode per request")
    hw.add_argument("--model", required=True)
    hw.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(handwritten_app(args.model), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    _main()
