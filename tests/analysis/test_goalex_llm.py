"""GoalEx back ends: an OpenAI-compatible endpoint against a local fake server (a real HTTP server on
127.0.0.1 in a thread, recording requests), a tiny local causal LM, the CLI."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from embedlab.analysis import goalex as gx
from embedlab.analysis.goalex_llm import CachedLLM, EndpointLLM, TransformersLLM
from embedlab.errors import Unavailable

from ..conftest import run_cli
from .test_goalex import ALL4, CORPUS, EXPL, TRUTH


class FakeOpenAI:
    """/v1/chat/completions: proposals from ``propose_answer``; yes/no by the keyword rule of test_goalex,
    with top_logprobs (log P(yes) = log 0.9 or log 0.1) unless ``logprobs`` is False (then a 400 for any
    request that asks for them, as some servers do) or ``answer`` overrides the text."""

    def __init__(self, logprobs: bool = True, answer: str | None = None) -> None:
        self.requests: list[dict] = []
        self.logprobs = logprobs
        self.answer = answer
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status, reply = fake.reply(body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reply(self, body):
        user = body["messages"][-1]["content"]
        if body.get("max_tokens") != 1:
            return 200, {"choices": [{"message": {"role": "assistant", "content": ALL4}}]}
        if body.get("logprobs") and not self.logprobs:
            return 400, {"error": {"message": "logprobs are not supported"}}
        expl = user.split("Property: ", 1)[1].split("\n", 1)[0]
        text = user.split("Text: ", 1)[1].split("\n", 1)[0]
        yes = any(w in text for w in EXPL.get(expl, expl.split()[-1]).split("|"))
        word = self.answer or ("Yes" if yes else "No")
        choice = {"message": {"role": "assistant", "content": word}}
        if body.get("logprobs"):
            p = 0.9 if yes else 0.1
            choice["logprobs"] = {
                "content": [
                    {
                        "token": word,
                        "logprob": math.log(max(p, 1 - p)),
                        "top_logprobs": [
                            {"token": "Yes", "logprob": math.log(p)},
                            {"token": "No", "logprob": math.log(1 - p)},
                            {"token": "The", "logprob": -6.0},
                        ],
                    }
                ]
            }
        return 200, {"choices": [choice]}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_server():
    servers = []

    def start(**kw):
        s = FakeOpenAI(**kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def test_endpoint_logprobs_key_and_loop(fake_server, monkeypatch):
    srv = fake_server()
    monkeypatch.setenv("MY_KEY", "sk-test")
    llm = EndpointLLM(srv.url, "my-model", key_env="MY_KEY", workers=4)
    res = gx.GoalEx(llm).fit(CORPUS, gx.GoalExConfig(k=4, goal="cluster by topic", rounds=1))
    assert gx.cluster_scores(TRUTH, res.labels)["accuracy"] == 1.0
    assert all(r["path"] == "/v1/chat/completions" and r["auth"] == "Bearer sk-test" for r in srv.requests)
    bodies = [r["body"] for r in srv.requests]
    assert all(b["model"] == "my-model" for b in bodies)
    assert bodies[0]["messages"][0]["role"] == "system" and "cluster by topic" in bodies[0]["messages"][1]["content"]
    yn = [b for b in bodies if b["max_tokens"] == 1]
    assert yn and all(b["logprobs"] is True and b["top_logprobs"] == 5 and b["temperature"] == 0 for b in yn)
    # 6 explanations x (40 texts + the content-free text)
    assert len(yn) == 6 * 41 and llm.logprobs_supported is True
    assert llm.yes_no([("s", "Property: is about rain\nText: rain today\nq")])[0] == pytest.approx(
        math.log(9), abs=1e-9
    )


def test_endpoint_without_logprobs_parses_answers(fake_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv = fake_server(logprobs=False)
    llm = EndpointLLM(srv.url, workers=1)
    assert llm.yes_no(
        [("s", "Property: is about rain\nText: rain today\nq"), ("s", "Property: is about rain\nText: sun today\nq")]
    ) == [5.0, -5.0]
    assert llm.logprobs_supported is False and srv.requests[0]["auth"] is None
    assert "logprobs" not in srv.requests[-1]["body"]  # it stopped asking
    # an answer that is neither yes nor no: retried (1 + 2 times), then skipped and reported
    srv2 = fake_server(logprobs=False, answer="Perhaps")
    llm2 = EndpointLLM(srv2.url, workers=1)
    res = gx.GoalEx(llm2).fit(CORPUS[:10], gx.GoalExConfig(k=1, goal="topic", rounds=1))
    assert res.explanations == [] and any("unreadable" in n and "skipped" in n for n in res.notes)
    n_pairs = 6 * 10
    assert (
        sum(
            r["body"]["max_tokens"] == 1 and "Text: N/A" not in r["body"]["messages"][-1]["content"]
            for r in srv2.requests
        )
        == 3 * n_pairs + 1
    )  # +1: the first request that asked for logprobs


def test_unreachable_endpoint_fails_fast_naming_the_url():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    t = time.monotonic()
    with pytest.raises(Unavailable, match=f"cannot reach the LLM endpoint http://127.0.0.1:{port}/v1/chat/completions"):
        EndpointLLM(url)
    assert time.monotonic() - t < 10


def test_endpoint_cache_second_run_sends_nothing(fake_server, tmp_path):
    srv = fake_server()
    cfg = gx.GoalExConfig(k=4, goal="cluster by topic", rounds=1)
    r1 = gx.GoalEx(CachedLLM(EndpointLLM(srv.url), tmp_path)).fit(CORPUS, cfg)
    sent = len(srv.requests)
    r2 = gx.GoalEx(CachedLLM(EndpointLLM(srv.url), tmp_path)).fit(CORPUS, cfg)
    assert len(srv.requests) == sent and r1.explanations == r2.explanations


def _tiny_causal_lm(path):
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = [
        "[PAD]",
        "[UNK]",
        "</s>",
        "<s>",
        "yes",
        "no",
        "Yes",
        "No",
        "-",
        '"',
        "is",
        "about",
        "text",
        "Property:",
        "Text:",
        "football",
        "rain",
        "Answer:",
    ]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>", bos_token="<s>"
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(words),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=3,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def test_local_causal_lm_batched_scores_match_single(tmp_path):
    import torch

    llm = TransformersLLM(str(_tiny_causal_lm(tmp_path / "lm")), batch_size=4)
    turns = [("", "Property: is about football\nText: " + " ".join(["text"] * n)) for n in (1, 5, 9, 2, 7)]
    batched = llm.yes_no(turns)
    for turn, got in zip(turns, batched):  # one at a time, no padding: an independent computation
        ids = llm.tokenizer(llm.render(turn), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            lp = llm.model(**ids).logits[0, -1].log_softmax(-1)
        expected = torch.logsumexp(lp[llm._yes], -1) - torch.logsumexp(lp[llm._no], -1)
        assert got == pytest.approx(float(expected), abs=1e-4)
    out = llm.generate(turns[:2], max_new_tokens=3)
    assert len(out) == 2 and all(isinstance(o, str) for o in out) and llm.calls == 7
    assert llm.fingerprint.startswith("transformers:")


def _tiny_gpt2(path):
    """A tiny random GPT-2: absolute (learned) position embeddings, so padding that shifts positions shows."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = [
        "[PAD]",
        "[UNK]",
        "</s>",
        "yes",
        "no",
        "Yes",
        "No",
        "Property:",
        "Text:",
        "about",
        "text",
        "football",
        "Answer:",
    ]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>")
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(words),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=2,
    )
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():  # large position embeddings, so a shift of positions changes the answer
        model.transformer.wpe.weight.normal_(0, 1.0)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def test_left_padded_batches_pass_position_ids_absolute_positions(tmp_path):
    import torch

    llm = TransformersLLM(str(_tiny_gpt2(tmp_path / "gpt2")), batch_size=8)
    turns = [("", "Property: about football\nText: " + " ".join(["text"] * n)) for n in (1, 6, 11, 3)]
    batched = llm.yes_no(turns)  # one batch, left-padded to the longest
    for turn, got in zip(turns, batched):  # alone: no padding, positions 0..L-1
        ids = llm.tokenizer(llm.render(turn), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            lp = llm.model(**ids).logits[0, -1].log_softmax(-1)
        expected = torch.logsumexp(lp[llm._yes], -1) - torch.logsumexp(lp[llm._no], -1)
        assert got == pytest.approx(float(expected), abs=1e-4)


def test_cli_cluster_goalex_via_endpoint_and_kmeans(fake_server, tiny_bert, tmp_path, monkeypatch, capsys):
    srv = fake_server()
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    # the same call twice: the second is answered from the cache, with no request sent
    args = ["cluster", "--corpus", corpus, "--goal", "cluster by topic", "--k", 4, "--model", tiny_bert]
    args += ["--llm-endpoint", srv.url, "--llm", "m", "--rounds", 1, "--out", tmp_path / "o"]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    data = json.loads((tmp_path / "o" / "clusters.json").read_text())
    assert gx.cluster_scores(TRUTH, data["labels"])["accuracy"] == 1.0
    assert (
        "is about rain" in out
        and (tmp_path / "o" / "clusters.png").is_file()
        and (tmp_path / "o" / "report.md").is_file()
    )
    sent = len(srv.requests)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and len(srv.requests) == sent and "0 sent" in err
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "cluster",
        "--corpus",
        corpus,
        "--k",
        4,
        "--method",
        "kmeans",
        "--model",
        tiny_bert,
        "--out",
        tmp_path / "k",
    )
    assert code == 0, err
    assert len(json.loads((tmp_path / "k" / "clusters.json").read_text())["labels"]) == 40


@pytest.mark.parametrize(
    "args, message, exit_code",
    [
        (["--k", "41", "--goal", "g"], "--k 41 is larger than the number of texts (40)", 2),  # a usage error
        (["--k", "2", "--goal", ""], "the goal is empty", 1),
        (
            ["--k", "2", "--goal", "g", "--llm-endpoint", "http://127.0.0.1:9/v1"],
            "cannot reach the LLM endpoint http://127.0.0.1:9/v1",
            1,
        ),
    ],
)
def test_cli_bad_input_one_line(args, message, exit_code, tiny_bert, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    code, out, err = run_cli(
        monkeypatch, capsys, "cluster", "--corpus", corpus, "--model", tiny_bert, *args, "--out", tmp_path / "o"
    )
    assert code == exit_code and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_empty_corpus(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "empty.txt"
    corpus.write_text("\n")
    code, out, err = run_cli(monkeypatch, capsys, "cluster", "--corpus", corpus, "--goal", "g", "--k", 2)
    assert code == 1 and "is empty" in err and "Traceback" not in err


@pytest.mark.slow
def test_smollm2_formats_prompts_and_parses(tmp_path):
    """The packaged SmolLM2: prompts render through its chat template, answers parse; no quality asserted."""
    llm = CachedLLM(TransformersLLM("smollm2-135m"), tmp_path)
    prompts = gx.load_prompts()
    runner = gx.GoalEx(llm, prompts=prompts)
    res = runner.fit(CORPUS[::4], gx.GoalExConfig(k=2, goal="cluster by topic", rounds=1, candidates_per_round=4))
    assert llm.inner.render(("sys", "hi")).startswith("<|im_start|>system\nsys")
    assert runner.proposal_log and all(isinstance(p["answer"], str) for p in runner.proposal_log)
    assert all(gx.parse_explanations(p["answer"]) == p["parsed"] for p in runner.proposal_log)
    assert len(res.labels) == 10 and res.settings["llm_fingerprint"].startswith("transformers:")


def test_llm_cache_keys_on_the_weights_not_the_path(tmp_path):
    import shutil

    import torch

    path = _tiny_causal_lm(tmp_path / "lm")
    turns = [("", "Property: is about football\nText: football")]
    first = CachedLLM(TransformersLLM(str(path)), tmp_path / "cache")
    want = first.yes_no(turns)
    assert first.inner.calls == 1

    moved = CachedLLM(TransformersLLM(str(shutil.copytree(path, tmp_path / "elsewhere"))), tmp_path / "cache")
    assert moved.fingerprint == first.fingerprint
    assert moved.yes_no(turns) == want and moved.inner.calls == 0 and moved.hits == 1  # same weights: a hit

    moved.yes_no([("", "Property: is about rain\nText: football")])
    assert moved.inner.calls == 1  # another prompt: a miss

    changed = TransformersLLM(str(path))
    with torch.no_grad():
        changed.model.lm_head.weight[4, 0] += 1e-3  # one weight
    assert changed.fingerprint != first.fingerprint
    again = CachedLLM(changed, tmp_path / "cache")
    again.yes_no(turns)
    assert again.inner.calls == 1 and again.hits == 0  # a single changed weight: a miss
