"""Open-loop load benchmark of ``embedlab serve`` against two peers on the same model, texts and machine.

    OMP_NUM_THREADS=1 .venv/bin/python bench/serve_load.py            # the full run: about 25 min (see --help)
    OMP_NUM_THREADS=1 .venv/bin/python bench/serve_load.py --quick    # a smoke run: about 3 min, writes nothing
    OMP_NUM_THREADS=1 .venv/bin/python bench/serve_load.py --mix short --servers embedlab   # one sentence a request

The generator sends at a constant arrival rate, whatever the replies (like k6's constant-arrival-rate):
request i is due at t0 + i/rate. A request that cannot go out on time (the generator is more than
--max-send-lag late, or --max-in-flight requests are already open) is *dropped by the generator* and
counted, never sent late. Latency is measured from the due time to the end of the response.

Servers, each its own process on its own 127.0.0.1 port, all at fp32, with their libraries' default
threads (torch: one per core), as their users run them; --threads N pins OMP_NUM_THREADS=N in every server
instead (see bench/_serve_peers.py): embedlab serve; (a) FastAPI + SentenceTransformer.encode per request, the
server a user would write by hand; (b) infinity-emb 0.0.78 in bench/.venv-infinity (created on first use;
when it cannot install or start, the table says why).

Per server: a coarse sweep (short steps, rate x1.5 each) brackets the highest rate whose p99 < 500 ms,
then full-length steps confirm and bisect it. A step passes when p99 over all sent requests (a failed
request counts as infinitely slow) is < 500 ms, no 5xx and no 429 came back, and the generator dropped
at most 1%. Then, for embedlab only: 2x its sustainable rate against a server started with a
--max-queue-tokens of about --shed-seconds of its measured token throughput (it must shed load with 429:
no 5xx, p99 of admitted requests < 2 s), and a soak at 70% of the sustainable rate on a fresh server
(RSS from /proc/PID/status after --soak-warmup seconds of load and at the end; growth must stay < 10%).

Each request is one OpenAI /v1/embeddings call. 90% are query traffic: 1 to 8 STS-B sentences (uniform).
--long-share (10%) are indexing traffic: 1 to 2 SciFact abstracts (most are cut at the model's 256 tokens).
Long texts come in requests of their own, as they do in practice. ``--mix short`` is the other traffic
shape: one STS-B sentence per request (``--long-share 0 --max-texts 1``), reported in its own section
("## Load benchmark: short sentences"). A request that mixed one abstract with
seven sentences would cost the hand-written server 8 x 256 padded tokens, a second of CPU on its own, and
no server could then meet a 500 ms p99 at any rate. The request sequence is seeded and identical for every
server and step. Results go to docs/serving.md
("## Load benchmark", replaced between that heading and the next) and docs/serving_load.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gzip
import json
import math
import random
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _serve_peers as peers  # noqa: E402

REPO = peers.REPO
P99_LIMIT = 0.5
OVERLOAD_P99_LIMIT = 2.0
HEADERS = {"content-type": "application/json"}


# -- the request set ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Req:
    body: bytes
    texts: int
    tokens: int  # the model's tokens (special tokens included, cut at its max length), for tokens/s


def _data_dir(arg: str | None) -> Path:
    from embedlab.settings import data_dir

    root = Path(arg) if arg else data_dir()
    if root is None or not (root / "stsbenchmark").is_dir() or not (root / "scifact").is_dir():
        raise SystemExit(
            f"need stsbenchmark/ and scifact/ under the data directory (got {root}); set EMBEDLAB_DATA or pass --data"
        )
    return root


def load_texts(root: Path) -> tuple[list[str], list[str]]:
    short: list[str] = []
    for split in ("train", "dev", "test"):
        lines = (root / "stsbenchmark" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
        for line in lines:
            cols = line.split("\t")
            short += [c.strip() for c in cols[:2] if c.strip()]
    short = list(dict.fromkeys(short))
    long: list[str] = []
    with gzip.open(root / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line).get("text", "").strip()
            if len(text) > 400:
                long.append(text)
    return short, long


def build_requests(
    model_dir: Path, root: Path, n: int, long_share: float, max_texts: int, max_docs: int, seed: int
) -> list[Req]:
    """``n`` seeded requests: a share ``long_share`` of them carry 1..max_docs SciFact abstracts (indexing
    traffic), the others 1..max_texts STS-B sentences (query traffic)."""
    from tokenizers import Tokenizer

    short, long = load_texts(root)
    rng = random.Random(seed)
    chosen = []
    for _ in range(n):
        if rng.random() < long_share:
            chosen.append([rng.choice(long) for _ in range(rng.randint(1, max_docs))])
        else:
            chosen.append([rng.choice(short) for _ in range(rng.randint(1, max_texts))])
    unique = list(dict.fromkeys(t for texts in chosen for t in texts))
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    max_len = json.loads((model_dir / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
    tok.enable_truncation(max_len)
    tok.no_padding()
    counts = {t: len(e.ids) for t, e in zip(unique, tok.encode_batch(unique))}
    return [
        Req(
            json.dumps({"input": texts, "model": "minilm-l6", "encoding_format": "float"}).encode(),
            len(texts),
            sum(counts[t] for t in texts),
        )
        for texts in chosen
    ]


# -- the open-loop generator ---------------------------------------------------------------------------
TIMEOUT, ERROR, ABANDONED = -1, -2, -3  # pseudo-statuses


@dataclass
class Step:
    server: str
    phase: str  # coarse | fine | overload | soak
    rate: float
    duration: float
    planned: int = 0
    sent: int = 0
    dropped: int = 0
    # (status, latency in s, tokens, texts) of each request sent
    results: list[tuple[int, float, int, int]] = field(default_factory=list, repr=False)
    wall: float = 0.0
    aborted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def count(self, pred: Callable[[int], bool]) -> int:
        return sum(1 for s, *_ in self.results if pred(s))

    @property
    def ok(self) -> int:
        return self.count(lambda s: s == 200)

    @property
    def n429(self) -> int:
        return self.count(lambda s: s == 429)

    @property
    def n5xx(self) -> int:
        return self.count(lambda s: s >= 500)

    @property
    def other(self) -> int:
        return self.count(lambda s: s != 200 and s != 429 and s < 500)

    def latencies(self, ok_only: bool = False) -> list[float]:
        return sorted(lat if s == 200 else math.inf for s, lat, *_ in self.results if not ok_only or s == 200)

    def pct(self, q: float, ok_only: bool = False) -> float:
        """Nearest-rank percentile; failed requests count as infinitely slow unless ok_only."""
        lat = self.latencies(ok_only)
        return lat[max(0, math.ceil(q * len(lat)) - 1)] if lat else math.nan

    @property
    def req_per_s(self) -> float:
        return self.ok / self.wall if self.wall else 0.0

    @property
    def tok_per_s(self) -> float:
        return sum(t for s, _, t, _ in self.results if s == 200) / self.wall if self.wall else 0.0

    @property
    def texts_per_s(self) -> float:
        return sum(x for s, _, _, x in self.results if s == 200) / self.wall if self.wall else 0.0

    @property
    def share429(self) -> float:
        return self.n429 / self.sent if self.sent else 0.0

    @property
    def passed(self) -> bool:
        return (
            not self.aborted
            and self.sent > 0
            and self.n5xx == 0
            and self.n429 == 0
            and self.dropped <= 0.01 * self.planned
            and self.pct(0.99) < P99_LIMIT
        )

    def line(self) -> str:
        p50, p99 = self.pct(0.5), self.pct(0.99)
        return (
            f"{self.server:>11} {self.phase:>8} {self.rate:7.2f} req/s x {self.duration:5.1f} s: sent {self.sent}"
            f" (dropped {self.dropped}), 200 {self.ok}, 429 {self.n429}, 5xx {self.n5xx}, other {self.other};"
            f" p50 {fmt_ms(p50)} p99 {fmt_ms(p99)}; {self.req_per_s:.1f} req/s, {self.tok_per_s:.0f} tok/s"
            f"{' ABORTED' if self.aborted else ''} -> {'pass' if self.passed else 'fail'}"
        )


def fmt_ms(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "failed"
    return f"{1000 * x:.0f} ms"


class Generator:
    def __init__(self, reqs: list[Req], *, max_in_flight: int, max_send_lag: float, timeout: float) -> None:
        self.reqs, self.max_in_flight, self.max_send_lag, self.timeout = reqs, max_in_flight, max_send_lag, timeout

    async def run(
        self,
        client: Any,
        url: str,
        step: Step,
        *,
        abort_on_fail: bool = False,
        drain_timeout: float | None = None,
        alive: Callable[[], bool] = lambda: True,
    ) -> Step:
        """Send step.rate x step.duration requests open-loop; returns ``step`` filled in. ``abort_on_fail``
        stops sending as soon as the step can no longer pass (p99, a 5xx or 429, drops)."""
        import httpx

        loop = asyncio.get_running_loop()
        n = max(1, round(step.rate * step.duration))
        step.planned = n
        allowed_slow = n - math.ceil(0.99 * n)  # p99 < limit  <=>  at most this many requests at or over it
        open_: dict[asyncio.Task, float] = {}
        results = step.results
        last_done = [0.0]

        async def one(i: int, due: float) -> None:
            req = self.reqs[i % len(self.reqs)]
            try:
                r = await client.post(url, content=req.body, headers=HEADERS, timeout=self.timeout)
                status = r.status_code
            except httpx.TimeoutException:
                status = TIMEOUT
            except httpx.HTTPError:
                status = ERROR
            last_done[0] = loop.time()
            results.append((status, last_done[0] - due, req.tokens, req.texts))

        def hopeless() -> bool:
            now = loop.time()
            bad = sum(1 for s, lat, *_ in results if s != 200 or lat >= P99_LIMIT)
            bad += sum(1 for due in open_.values() if now - due >= P99_LIMIT)
            return bad > allowed_slow or any(s >= 500 or s == 429 for s, *_ in results) or step.dropped > 0.01 * n

        t0 = loop.time() + 0.05
        last_check = t0
        for i in range(n):
            due = t0 + i / step.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            if now - last_check >= 0.1:
                last_check = now
                if (abort_on_fail and hopeless()) or not alive():
                    step.aborted = True
                    break
            if now - due > self.max_send_lag or len(open_) >= self.max_in_flight:
                step.dropped += 1
                continue
            task = loop.create_task(one(i, due))
            open_[task] = due
            task.add_done_callback(lambda t: open_.pop(t, None))
            step.sent += 1
        if open_:
            wait = drain_timeout if drain_timeout is not None else (10.0 if step.aborted else self.timeout + 5.0)
            _, pending = await asyncio.wait(set(open_), timeout=wait)
            for task in pending:
                due = open_.get(task, t0)
                task.cancel()
                results.append((ABANDONED, loop.time() - due, 0, 0))
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        window = n / step.rate if not step.aborted else (loop.time() - t0)
        step.wall = max(window, last_done[0] - t0) if results else 0.0
        return step


async def settle(client: Any, url: str, body: bytes, *, limit: float, deadline_s: float = 90.0) -> float:
    """Sequential probes until two in a row answer within ``limit`` s (the server has worked off any
    backlog a previous step left); returns the seconds it took (bounded by ``deadline_s``)."""
    import httpx

    start = time.monotonic()
    good = refused = 0
    while time.monotonic() - start < deadline_s and good < 2:
        t = time.monotonic()
        try:
            r = await client.post(url, content=body, headers=HEADERS, timeout=30.0)
            good = good + 1 if r.status_code == 200 and time.monotonic() - t < limit else 0
            refused = refused + 1 if r.status_code not in (200, 429, 503) else 0
            if refused >= 3:
                raise RuntimeError(f"the server answers {r.status_code} to a one-sentence request: {r.text[:200]}")
        except httpx.HTTPError:
            good = 0
        if good < 2:
            await asyncio.sleep(0.2)
    return time.monotonic() - start


# -- one server's measurements -------------------------------------------------------------------------
@dataclass
class Plan:
    coarse_s: float
    fine_s: float
    bisect: int
    factor: float
    start_rate: float
    max_rate: float
    overload_s: float
    soak_s: float
    soak_warmup_s: float
    warmup_requests: int


async def warm_up(client: Any, url: str, reqs: list[Req], count: int) -> float:
    """``count`` sequential requests; returns the median latency of one short request afterwards."""
    for req in reqs[:count]:
        with contextlib.suppress(Exception):
            await client.post(url, content=req.body, headers=HEADERS, timeout=60.0)
    probe = json.dumps({"input": ["A man is playing a guitar."], "model": "minilm-l6"}).encode()
    times = []
    for _ in range(5):
        t = time.monotonic()
        with contextlib.suppress(Exception):
            await client.post(url, content=probe, headers=HEADERS, timeout=30.0)
        times.append(time.monotonic() - t)
    return sorted(times)[2]


def make_client(max_in_flight: int) -> Any:
    import httpx

    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    return httpx.AsyncClient(limits=limits, trust_env=False)


async def sweep(
    server: peers.Server, gen: Generator, plan: Plan, say: Callable[[str], None]
) -> tuple[float, list[Step]]:
    """The highest rate that passed a full-length step (0 when none did), and every step run."""
    url = server.url + "/v1/embeddings"
    steps: list[Step] = []
    async with make_client(gen.max_in_flight) as client:
        base = await warm_up(client, url, gen.reqs, plan.warmup_requests)
        probe = json.dumps({"input": ["A man is playing a guitar."], "model": "minilm-l6"}).encode()
        limit = max(0.25, 3 * base)

        async def step(rate: float, seconds: float, phase: str) -> Step:
            st = await gen.run(
                client, url, Step(server.name, phase, rate, seconds), abort_on_fail=True, alive=server.alive
            )
            steps.append(st)
            say(st.line())
            if not server.alive():
                raise RuntimeError(f"{server.name} died during the sweep:\n{server.log_tail()}")
            await settle(client, url, probe, limit=limit)
            return st

        lo: float | None = None
        hi: float | None = None
        rate = plan.start_rate
        while rate <= plan.max_rate:
            if (await step(rate, plan.coarse_s, "coarse")).passed:
                lo, rate = rate, rate * plan.factor
            else:
                hi = rate
                break
        if lo is None:  # even the start rate failed: walk down
            rate = plan.start_rate
            for _ in range(4):
                rate /= plan.factor
                if (await step(rate, plan.coarse_s, "coarse")).passed:
                    lo = rate
                    break
                hi = rate
        confirmed = 0.0
        halvings = 0
        for _ in range(plan.bisect + 4):
            if lo is None:
                break
            if confirmed != lo:
                if (await step(lo, plan.fine_s, "fine")).passed:
                    confirmed = lo
                else:
                    hi, lo = lo, (lo / plan.factor if lo / plan.factor >= plan.start_rate / 8 else None)
                continue
            if hi is None or hi / lo <= 1.06 or halvings >= plan.bisect:
                break
            mid = math.sqrt(lo * hi)
            halvings += 1
            if (await step(mid, plan.fine_s, "fine")).passed:
                lo = confirmed = mid
            else:
                hi = mid
    return confirmed, steps


async def overload(server: peers.Server, gen: Generator, plan: Plan, rate: float, say: Callable[[str], None]) -> Step:
    url = server.url + "/v1/embeddings"
    async with make_client(gen.max_in_flight) as client:
        await warm_up(client, url, gen.reqs, plan.warmup_requests)
        st = await gen.run(client, url, Step(server.name, "overload", rate, plan.overload_s), alive=server.alive)
    say(st.line() + f"; admitted p99 {fmt_ms(st.pct(0.99, ok_only=True))}, 429 share {100 * st.share429:.1f}%")
    return st


async def soak(server: peers.Server, gen: Generator, plan: Plan, rate: float, say: Callable[[str], None]) -> Step:
    url = server.url + "/v1/embeddings"
    async with make_client(gen.max_in_flight) as client:
        await warm_up(client, url, gen.reqs, plan.warmup_requests)
        warm = await gen.run(client, url, Step(server.name, "soak-warm", rate, plan.soak_warmup_s), alive=server.alive)
        say(warm.line())
        rss0 = server.rss_bytes()
        samples: list[tuple[float, int]] = []

        async def sample() -> None:
            t0 = time.monotonic()
            while True:
                rss = server.rss_bytes()
                if rss is not None:
                    samples.append((time.monotonic() - t0, rss))
                await asyncio.sleep(5.0)

        sampler = asyncio.create_task(sample())
        try:
            st = await gen.run(client, url, Step(server.name, "soak", rate, plan.soak_s), alive=server.alive)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        rss1 = server.rss_bytes()
    st.extra.update(
        rss0=rss0, rss1=rss1, rss_max=max([r for _, r in samples] + [rss0 or 0, rss1 or 0]), alive=server.alive()
    )
    growth = (rss1 - rss0) / rss0 if rss0 and rss1 else math.nan
    st.extra["growth"] = growth
    say(st.line() + f"; RSS {mib(rss0)} -> {mib(rss1)} MiB ({100 * growth:+.1f}%)")
    return st


def mib(b: int | None) -> str:
    return "n/a" if not b else f"{b / 2**20:.0f}"


# -- the report ----------------------------------------------------------------------------------------
def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"embedlab": "#2f6fb3", "handwritten": "#c0392b", "infinity": "#27ae60"}
    labels = {
        "embedlab": "embedlab serve",
        "handwritten": "(a) FastAPI + ST.encode",
        "infinity": "(b) infinity-emb 0.0.78",
    }
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    cap = 60.0
    bound = results.get("_capacity", {}).get("req_per_s")
    if bound:
        ax.axvline(bound, color="black", lw=0.8, ls="--")
        ax.annotate(
            f"CPU capacity bound {bound:.0f} req/s", (bound, cap * 0.8), rotation=90, ha="right", va="top", fontsize=8
        )
    for name, res in results.items():
        steps = [s for s in res.get("steps", []) if s.phase in ("coarse", "fine")]
        if not steps:
            continue
        c = colours.get(name, "grey")
        for phase, marker, fill in (("coarse", "o", "none"), ("fine", "o", c)):
            pts = sorted((s.rate, min(s.pct(0.99), cap)) for s in steps if s.phase == phase)
            if pts:
                ax.plot(
                    *zip(*pts),
                    marker=marker,
                    mfc=fill,
                    color=c,
                    lw=1.2 if phase == "fine" else 0.6,
                    ls="-" if phase == "fine" else ":",
                    label=f"{labels.get(name, name)} ({'full' if phase == 'fine' else 'short'} steps)",
                )
        if res.get("sustained"):
            ax.axvline(res["sustained"], color=c, lw=0.8, ls="--", alpha=0.6)
    ov = results.get("embedlab", {}).get("overload")
    if ov is not None and ov.ok:
        ax.plot(
            [ov.rate],
            [min(ov.pct(0.99, ok_only=True), cap)],
            marker="*",
            ms=13,
            color=colours["embedlab"],
            ls="",
            label=f"embedlab at 2x, admitted requests ({100 * ov.share429:.0f}% got 429)",
        )
    from matplotlib.ticker import FuncFormatter

    ax.axhline(P99_LIMIT, color="black", lw=0.8, ls="--")
    ax.text(0.99, P99_LIMIT * 1.06, "p99 = 500 ms", fontsize=8, ha="right", transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else ""))
    ax.set_xlabel("offered load (requests/s, open loop)")
    ax.set_ylabel("p99 latency (s); failed requests count as infinite")
    ax.set_title("minilm-l6 on CPU: p99 latency vs offered rate", fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def report_lines(
    args: argparse.Namespace,
    results: dict[str, dict],
    targets: list[tuple[str, str, str]],
    mix: dict[str, float],
    png_name: str,
) -> list[str]:
    from _report import command, machine_facts

    threads = (
        f"OMP_NUM_THREADS={args.threads} in every server process"
        if args.threads > 0
        else "each server's library default (no OMP_NUM_THREADS; torch uses one thread per core)"
    )
    facts = machine_facts({"server threads": threads + "; the generator runs on the same machine"})
    names = {
        "embedlab": "embedlab serve" + (f" `{args.embedlab_args}`" if args.embedlab_args else ""),
        "handwritten": "(a) FastAPI + `SentenceTransformer.encode`",
        "infinity": "(b) infinity-emb 0.0.78 (torch engine)",
    }
    out = [
        f"Written by `{command()}` on {dt.datetime.now().astimezone().isoformat(timespec='seconds')}; "
        "rerun it to update this section and `serving_load.png` (the full run takes about "
        f"{args.expected_minutes:.0f} minutes).",
        "",
        "Method: an open-loop generator (httpx + asyncio) sends `POST /v1/embeddings` at a constant arrival "
        "rate, whatever the replies, as k6's `constant-arrival-rate` does. A request that cannot go out on "
        f"time (the generator more than {1000 * args.max_send_lag:.0f} ms late, or {args.max_in_flight} "
        "requests already open) is counted as dropped by the generator, never sent late. Latency runs from "
        "the time a request was due to the end of its response. Each server runs in its own process on its "
        "own 127.0.0.1 port, at fp32, with the same texts in the same order. (a)'s endpoint is a plain `def`, "
        "so FastAPI's thread pool runs several `encode` calls at once, sharing the cores. embedlab runs one "
        "forward pass at a time on all cores, over batches that mix requests and are split by length. infinity runs the torch engine without "
        "BetterTransformer, torch.compile or its disk cache (bench/_serve_peers.py says why).",
        "",
        f"Requests: {1 - args.long_share:.0%} are query traffic, 1 to {args.max_texts} STS-B sentences (uniform); "
        f"{args.long_share:.0%} are indexing traffic, 1 to {args.max_docs} SciFact abstracts (cut at the model's "
        f"256 tokens). On average a request has {mix['texts']:.1f} texts and {mix['tokens']:.0f} tokens (median "
        f"{mix['median']:.0f}, p99 {mix['p99']:.0f}; special tokens included). The sequence is seeded "
        "(`--seed`) and every step starts at its first request.",
        "",
        "A step passes when its p99 over all sent requests is under 500 ms (a failed request counts as "
        "infinitely slow), with no 5xx, no 429 and at most 1% dropped by the generator. A coarse sweep of "
        f"{args.coarse_seconds:g} s steps (x{args.factor:g} each) brackets the rate; {args.step_seconds:g} s "
        f"steps confirm it and then bisect the bracket (at most {args.bisect} times). *Sustained* is the highest "
        f"rate that passed a {args.step_seconds:g} s step.",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in facts.items()]
    cap = results.get("_capacity")
    if cap:
        out += [
            "",
            f"**Capacity bound.** Before the servers start, the bench times minilm-l6's forward pass alone, "
            f"in-process with {cap['threads']} torch threads, on the request texts grouped by length into "
            f"batches of ≤ {cap['budget']} padded tokens (no HTTP, no tokenizer, no padding to speak of): "
            f"**{cap['tokens_per_s']:.0f} tokens/s**. At {mix['tokens']:.0f} tokens per request, no server on "
            f"this CPU can answer more than **{cap['req_per_s']:.1f} req/s** at fp32, whatever its latency.",
        ]
    out += [
        "",
        "| server | sustained req/s (p99 < 500 ms) | p50 | p99 | texts/s | input tokens/s | 429 share | 5xx | "
        "dropped by generator | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("embedlab", "handwritten", "infinity"):
        if name not in results:
            continue
        res = results[name]
        if res.get("why"):
            out.append(f"| {names[name]} | not measured | | | | | | | | {res['why']} |")
            continue
        best = res.get("best")
        if best is None:
            out.append(f"| {names[name]} | < {args.start_rate / args.factor**4:.2f} | | | | | | | | no step passed |")
            continue
        texts = best.texts_per_s
        out.append(
            f"| {names[name]} | **{res['sustained']:.2f}** | {fmt_ms(best.pct(0.5))} | {fmt_ms(best.pct(0.99))} | "
            f"{texts:.0f} | {best.tok_per_s:.0f} | {100 * best.share429:.1f}% | {best.n5xx} | {best.dropped} | "
            f"{res.get('note', '')} |"
        )
    emb = results.get("embedlab", {})
    ov, sk = emb.get("overload"), emb.get("soak")
    if ov is not None:
        how = (
            f"started with `--max-queue-tokens {emb['shed_tokens']}` (≈{args.shed_seconds:g} s of its measured "
            "token throughput), so that it sheds load with 429"
            if emb.get("shed_tokens")
            else "with the sweep's flags (the default admission control)"
        )
        at = "at --overload-rate" if args.overload_rate else "at 2x its sustained rate"
        out += [
            "",
            f"Overload: embedlab {at} ({ov.rate:.2f} req/s for {ov.duration:g} s), {how}:",
            "",
            "| offered | sent | 200 | 429 share | 5xx | other failures | p50 admitted | p99 admitted | req/s answered |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {ov.rate:.2f} req/s | {ov.sent} | {ov.ok} | {100 * ov.share429:.1f}% | {ov.n5xx} | {ov.other} | "
            f"{fmt_ms(ov.pct(0.5, True))} | {fmt_ms(ov.pct(0.99, True))} | {ov.req_per_s:.2f} |",
        ]
    if sk is not None:
        x = sk.extra
        out += [
            "",
            f"Soak: embedlab (the sweep's flags) at 70% of its sustained rate ({sk.rate:.2f} req/s) for "
            f"{sk.duration:g} s, after {args.soak_warmup:g} s of the same load as a warm-up:",
            "",
            "| sent | 200 | 429 | 5xx | other | p50 | p99 | RSS after warm-up | RSS at end | max RSS | growth |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {sk.sent} | {sk.ok} | {sk.n429} | {sk.n5xx} | {sk.other} | {fmt_ms(sk.pct(0.5))} | {fmt_ms(sk.pct(0.99))} | "
            f"{mib(x.get('rss0'))} MiB | {mib(x.get('rss1'))} MiB | {mib(x.get('rss_max'))} MiB | "
            f"{100 * x.get('growth', math.nan):+.1f}% |",
        ]
    out += ["", "Targets (issue #10):", "", "| target | result | |", "|---|---|---|"]
    out += [f"| {t} | {r} | {v} |" for t, r, v in targets]
    out += [
        "",
        f"![p99 latency vs offered rate]({png_name})",
        "",
        "Every step the run made, in the order made:",
        "",
        "```",
    ]
    for name, res in results.items():
        if name.startswith("_"):
            continue
        out += [s.line() for s in res.get("steps", [])]
        for key in ("overload", "soak"):
            if name == "embedlab" and res.get(key) is not None:
                out.append(res[key].line())
    out += ["```", ""]
    return out


def replace_section(md: Path, heading: str, body: list[str]) -> None:
    from embedlab.io import atomic_path

    text = md.read_text(encoding="utf-8")
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        lines += ["", heading]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    new = lines[: start + 1] + [""] + body + (lines[end:] if end < len(lines) else [])
    with atomic_path(md) as tmp:
        tmp.write_text("\n".join(new).rstrip("\n") + "\n", encoding="utf-8")
    print(f"wrote {md} ({heading})")


# -- main ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Open-loop load benchmark: embedlab serve vs a hand-written FastAPI server vs infinity-emb "
        "on minilm-l6 (CPU).",
        epilog="Duration: the full run takes about 25 minutes on 2 cores, 35 at most (three sweeps of about 3 "
        "to 5 min each, a 60 s overload step, and the soak: --soak-seconds plus --soak-warmup plus start-up, "
        "11.5 min by default), plus a few minutes the first time to create bench/.venv-infinity. --quick "
        "takes about 3 minutes and writes nothing unless --write is given. Run it on an otherwise idle "
        "machine with OMP_NUM_THREADS=1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: short steps, 10 s soak; writes nothing by default"
    )
    p.add_argument("--servers", default="embedlab,handwritten,infinity", help="which servers to measure")
    p.add_argument("--model", default="minilm-l6", help="the embedlab alias (peers get its weights directory)")
    p.add_argument("--data", default=None, help="the data directory (default $EMBEDLAB_DATA or ../shared/data)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS of every server process (0: unset, each library's default)",
    )
    p.add_argument(
        "--embedlab-args",
        default="",
        help="extra flags for every `embedlab serve`, e.g. '--max-batch-tokens 1024' (shown in the report)",
    )
    p.add_argument(
        "--mix",
        choices=("mixed", "short"),
        default="mixed",
        help="mixed: query and indexing traffic (--max-texts, --long-share, --max-docs); short: one STS-B "
        "sentence per request (sets --long-share 0 --max-texts 1), written to its own section",
    )
    p.add_argument("--max-texts", type=int, default=8, help="sentences per short request: uniform in 1..N")
    p.add_argument("--long-share", type=float, default=0.10, help="the share of requests that carry abstracts")
    p.add_argument("--max-docs", type=int, default=2, help="abstracts per long request: uniform in 1..N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--coarse-seconds", type=float, default=8.0, help="length of a coarse sweep step")
    p.add_argument("--step-seconds", type=float, default=30.0, help="length of a confirming/bisecting step")
    p.add_argument("--bisect", type=int, default=3, help="bisection halvings after the bracket")
    p.add_argument("--factor", type=float, default=1.5, help="rate multiplier between coarse steps")
    p.add_argument("--start-rate", type=float, default=2.0, help="first rate of the coarse sweep (req/s)")
    p.add_argument("--max-rate", type=float, default=2000.0, help="the sweep stops here")
    p.add_argument("--overload-seconds", type=float, default=60.0, help="length of the 2x step")
    p.add_argument(
        "--overload-rate",
        type=float,
        default=0.0,
        help="the overload step's rate in req/s (0: 2x the sustained rate the sweep found)",
    )
    p.add_argument(
        "--no-sweep",
        action="store_true",
        help="embedlab only: skip the sweep (with --overload-rate: only the overload step)",
    )
    p.add_argument(
        "--shed-seconds",
        type=float,
        default=1.0,
        help="the 2x server's --max-queue-tokens = this many seconds of the measured token throughput "
        "(0: the server's default admission)",
    )
    p.add_argument("--soak-seconds", type=float, default=600.0, help="length of the soak (0: no soak)")
    p.add_argument("--soak-warmup", type=float, default=60.0, help="load before the first RSS sample")
    p.add_argument("--max-in-flight", type=int, default=256, help="open requests before the generator drops")
    p.add_argument("--max-send-lag", type=float, default=0.1, help="seconds late before the generator drops a request")
    p.add_argument("--timeout", type=float, default=30.0, help="client timeout per request (s)")
    p.add_argument("--infinity-venv", type=Path, default=peers.INFINITY_VENV)
    p.add_argument("--no-install", action="store_true", help="do not create the infinity venv when it is missing")
    p.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write docs/serving.md's section and the PNG (default: yes, except with --quick)",
    )
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "serving.md")
    p.add_argument(
        "--section",
        default=None,
        help="the heading of the section written (default '## Load benchmark', with ': short sentences' "
        "for --mix short)",
    )
    p.add_argument("--png", type=Path, default=REPO / "docs" / "serving_load.png")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in (
            ("coarse_seconds", 2.0),
            ("step_seconds", 4.0),
            ("bisect", 1),
            ("overload_seconds", 4.0),
            ("soak_seconds", 10.0),
            ("soak_warmup", 3.0),
        ):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    if args.mix == "short":
        for name, value in (("long_share", 0.0), ("max_texts", 1)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    args.section = args.section or ("## Load benchmark" + (": short sentences" if args.mix == "short" else ""))
    if args.write is None:
        args.write = not args.quick
    args.expected_minutes = 25.0 if not args.quick else 3.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every server is stopped in a finally
    from embedlab.models.aliases import ALIASES

    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    extra = shlex.split(args.embedlab_args)
    unknown = set(wanted) - {"embedlab", "handwritten", "infinity"}
    if unknown:
        raise SystemExit(f"unknown servers: {sorted(unknown)}")
    model_dir = Path(ALIASES[args.model].locate())
    root = _data_dir(args.data)
    reqs = build_requests(model_dir, root, 20000, args.long_share, args.max_texts, args.max_docs, args.seed)
    toks = sorted(r.tokens for r in reqs)
    mix = {
        "texts": sum(r.texts for r in reqs) / len(reqs),
        "tokens": sum(toks) / len(toks),
        "median": toks[len(toks) // 2],
        "p99": toks[math.ceil(0.99 * len(toks)) - 1],
    }
    print(
        f"{len(reqs)} requests: {mix['texts']:.2f} texts and {mix['tokens']:.0f} tokens each on average "
        f"(median {mix['median']}, p99 {mix['p99']})"
    )
    plan = Plan(
        args.coarse_seconds,
        args.step_seconds,
        args.bisect,
        args.factor,
        args.start_rate,
        args.max_rate,
        args.overload_seconds,
        args.soak_seconds,
        args.soak_warmup,
        8 if args.quick else 24,
    )
    gen = Generator(reqs, max_in_flight=args.max_in_flight, max_send_lag=args.max_send_lag, timeout=args.timeout)
    started = time.monotonic()
    cap = forward_capacity(args.model, reqs, args.threads)
    print(
        f"capacity bound: minilm-l6 forward alone {cap['tokens_per_s']:.0f} tokens/s "
        f"({cap['threads']} threads) = {cap['tokens_per_s'] / mix['tokens']:.1f} req/s at most"
    )
    cap["req_per_s"] = cap["tokens_per_s"] / mix["tokens"]
    log_dir = Path(tempfile.mkdtemp(prefix="serve-load-"))
    print(f"server logs: {log_dir}")

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {msg}", flush=True)

    results: dict[str, dict] = {"_capacity": cap}

    def run_server(server: peers.Server, fn: Callable[[peers.Server], Any]) -> Any:
        server.start()
        try:
            ready = server.wait_ready()
            say(f"{server.name} ready after {ready:.1f} s (pid {server.pid}, port {server.port})")
            return asyncio.run(fn(server))
        finally:
            server.stop()

    for name in wanted:
        res: dict[str, Any] = {}
        results[name] = res
        if args.no_sweep:
            res.update(sustained=0.0, steps=[], best=None)
            continue
        try:
            if name == "embedlab":
                server = peers.embedlab_server(args.model, peers.free_port(), log_dir, args.threads, extra=extra)
            elif name == "handwritten":
                server = peers.handwritten_server(model_dir, peers.free_port(), log_dir, args.threads)
            else:
                if args.no_install and not (args.infinity_venv / "bin" / "infinity_emb").exists():
                    res["why"] = f"{args.infinity_venv} is missing (--no-install)"
                    say(f"infinity: {res['why']}")
                    continue
                exe, why = peers.ensure_infinity(args.infinity_venv, log=say)
                if exe is None:
                    res["why"] = why
                    say(f"infinity: not measured: {why}")
                    continue
                server = peers.infinity_server(exe, model_dir, peers.free_port(), log_dir, args.threads)
            res["sustained"], res["steps"] = run_server(server, lambda s: sweep(s, gen, plan, say))
            fine = [s for s in res["steps"] if s.phase == "fine" and s.passed and s.rate == res["sustained"]]
            res["best"] = fine[-1] if fine else None
            if res["sustained"] and res["sustained"] * args.factor > args.max_rate:
                res["note"] = "the sweep reached --max-rate"
            say(f"{name}: sustained {res['sustained']:.2f} req/s with p99 < 500 ms")
        except Exception as exc:  # noqa: BLE001 — a peer that cannot run is reported, not fatal
            if name == "embedlab":
                raise
            res["why"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            say(f"{name}: not measured: {res['why']}")
    emb = results.get("embedlab")
    if emb and (emb.get("best") is not None or args.overload_rate):
        sustained, best = emb["sustained"], emb["best"]
        rate = args.overload_rate or 2 * sustained
        # at least one largest request (max_texts x 256 tokens), which would otherwise get 413
        emb["shed_tokens"] = (
            max(args.max_texts * 256, round(args.shed_seconds * best.tok_per_s))
            if args.shed_seconds > 0 and best is not None
            else None
        )
        server = peers.embedlab_server(
            args.model,
            peers.free_port(),
            log_dir,
            args.threads,
            max_queue_tokens=emb["shed_tokens"],
            name="embedlab-shed",
            extra=extra,
        )
        emb["overload"] = run_server(server, lambda s: overload(s, gen, plan, rate, say))
        if args.soak_seconds > 0:
            server = peers.embedlab_server(
                args.model, peers.free_port(), log_dir, args.threads, name="embedlab-soak", extra=extra
            )
            emb["soak"] = run_server(server, lambda s: soak(s, gen, plan, 0.7 * sustained, say))

    targets = evaluate(results)
    print("\nTargets:")
    for t, r, v in targets:
        print(f"  {v:>16}  {t}: {r}")
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.write:
        png = args.png if args.mix == "mixed" else args.png.with_name(args.png.stem + "_short.png")
        plot(results, png)
        print(f"wrote {png}")
        body = report_lines(args, results, targets, mix, png.name)
        replace_section(args.doc, args.section, body)
    return 0


def forward_capacity(model: str, reqs: list[Req], threads: int, budget: int = 512, seconds: float = 8.0) -> dict:
    """The model's forward throughput alone (tokens/s), in this process with the servers' thread count: the
    texts of the first requests, length-sorted into batches of <= ``budget`` padded tokens, run for about
    ``seconds``. An upper bound on any server's token throughput on this CPU."""
    import os

    import torch

    import embedlab
    from embedlab.models.batching import token_budget_batches

    before = torch.get_num_threads()
    torch.set_num_threads(threads if threads > 0 else (os.cpu_count() or 1))
    try:
        emb = embedlab.load(model).eval()
        texts = [t for r in reqs[:400] for t in json.loads(r.body)["input"]]
        tok = emb.tokenize(texts)
        batches = list(token_budget_batches(tok.lengths, budget, 64))
        useful = done = 0
        with torch.inference_mode():
            for idx in batches[:3]:  # warm-up
                emb(emb.batch_features([tok.ids[i] for i in idx], [0] * len(idx), emb.device), postprocess=False)
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                idx = batches[done % len(batches)]
                emb(emb.batch_features([tok.ids[i] for i in idx], [0] * len(idx), emb.device), postprocess=False)
                useful += sum(tok.lengths[i] for i in idx)
                done += 1
            elapsed = time.perf_counter() - start
        return {"tokens_per_s": useful / elapsed, "threads": torch.get_num_threads(), "budget": budget}
    finally:
        torch.set_num_threads(before)


def evaluate(results: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(target, result, met / missed / not evaluated) for each target of issue #10."""
    out = []
    emb = results.get("embedlab", {})
    e = emb.get("sustained", 0.0)

    def ratio(peer: str, need: float, label: str) -> None:
        res = results.get(peer)
        if res is None:
            return
        if res.get("why"):
            out.append((label, f"peer not measured: {res['why']}", "not evaluated"))
            return
        p = res.get("sustained", 0.0)
        if not p:
            out.append((label, f"embedlab {e:.2f} req/s; the peer passed no step", "met" if e else "missed"))
            return
        r = e / p
        out.append((label, f"{e:.2f} / {p:.2f} req/s = {r:.2f}x", "met" if r >= need else "missed"))

    cap = results.get("_capacity")
    if cap:
        out.append(
            (
                "(context) the CPU's capacity bound",
                f"{cap['req_per_s']:.1f} req/s; embedlab sustains {e / cap['req_per_s']:.0%} of it",
                "-",
            )
        )
    ratio("handwritten", 3.0, "sustained rate ≥ 3x peer (a)")
    ratio("infinity", 1.0, "sustained rate ≥ 1.0x infinity")
    ov = emb.get("overload")
    if ov is not None:
        p99 = ov.pct(0.99, ok_only=True)
        out.append(("at 2x: no 5xx", f"{ov.n5xx} 5xx, {ov.other} other failures", "met" if ov.n5xx == 0 else "missed"))
        out.append(
            (
                "at 2x: admitted p99 < 2 s",
                f"{fmt_ms(p99)}; 429 share {100 * ov.share429:.1f}%",
                "met" if p99 < OVERLOAD_P99_LIMIT else "missed",
            )
        )
        steps = emb.get("steps", [])
        if steps:
            peak = max([s.req_per_s for s in steps] + [ov.req_per_s])
            share = ov.req_per_s / peak
            out.append(
                (
                    "at 2x: throughput ≥ 90% of the peak",
                    f"{ov.req_per_s:.2f} req/s answered; the peak of every step run {peak:.2f} req/s ({share:.0%})",
                    "met" if share >= 0.9 else "missed",
                )
            )
        else:
            out.append(
                (
                    "at 2x: throughput ≥ 90% of the peak",
                    f"{ov.req_per_s:.2f} req/s answered; no sweep run",
                    "not evaluated",
                )
            )
    sk = emb.get("soak")
    if sk is not None:
        g = sk.extra.get("growth", math.nan)
        ok = not math.isnan(g) and g < 0.10 and sk.extra.get("alive", False)
        out.append(
            (
                f"soak {sk.duration:g} s at 70%: RSS growth < 10%",
                f"{mib(sk.extra.get('rss0'))} -> {mib(sk.extra.get('rss1'))} MiB ({100 * g:+.1f}%); "
                f"p99 {fmt_ms(sk.pct(0.99))}, {sk.n5xx} 5xx",
                "met" if ok else "missed",
            )
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
