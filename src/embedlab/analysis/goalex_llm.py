"""LLM back ends for GoalEx: a local causal LM through transformers (the packaged SmolLM2 GGUF, or any
causal-LM directory), an OpenAI-compatible chat endpoint, and a disk cache in front of either.

Every back end answers two kinds of request, each a chat turn ``(system, user)``:

- ``generate``: free text (the proposer);
- ``yes_no``: the log-odds log P(yes) - log P(no) of the first answer token (the assigner), or ``None``
  when the answer cannot be read (an endpoint without log-probabilities that answers neither yes nor no).

The cache keys each call (:func:`embedlab.io.cache_key`) by the back end's fingerprint (a local LM's
weight fingerprint; an endpoint's URL and model name), the request kind, its settings and the prompt, and
stores one small JSON file per call (atomic writes), so a rerun of the same clustering makes no LLM call.
Entries written under the older key recipe are never read (they miss).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from embedlab.errors import ConfigError, InputError, ModelNotFoundError, Unavailable
from embedlab.io import cache_key, write_json
from embedlab.progress import ShowProgress, progress_bar

log = logging.getLogger(__name__)

Turn = tuple[str, str]  # (system, user)
#: log-odds given to an endpoint's plain "yes"/"no" when it returns no log-probabilities
TEXT_ANSWER_LOGODDS = 5.0
YES_WORDS = ("yes", "Yes", " yes", " Yes", "YES")
NO_WORDS = ("no", "No", " no", " No", "NO")


def _logsumexp(values: Sequence[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def parse_yes_no(answer: str) -> float | None:
    """Read a text answer: leading yes -> +TEXT_ANSWER_LOGODDS, leading no -> -TEXT_ANSWER_LOGODDS, else None."""
    word = answer.strip().lstrip("*\"'([").lower()
    if word.startswith("yes"):
        return TEXT_ANSWER_LOGODDS
    if word.startswith("no"):
        return -TEXT_ANSWER_LOGODDS
    return None


class LLM(ABC):
    """The interface of a GoalEx back end. ``calls`` counts the prompts actually sent to the model."""

    name: str = "llm"

    def __init__(self) -> None:
        self.calls = 0

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """What identifies the model behind the answers (the cache key's model part)."""

    @abstractmethod
    def generate(
        self, turns: Sequence[Turn], *, max_new_tokens: int = 160, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        """One answer per turn."""

    @abstractmethod
    def yes_no(self, turns: Sequence[Turn]) -> list[float | None]:
        """log P(yes) - log P(no) per turn; None where the answer could not be read."""


# --- local causal LM ------------------------------------------------------------------------------------


#: config entries that say where or with what a model was loaded, not what it computes
_PLACE_KEYS = ("_name_or_path", "_commit_hash", "transformers_version", "embedlab_gguf_source")


def _llm_fingerprint(model: Any, tokenizer: Any) -> str:
    """The causal LM's weight fingerprint (:func:`embedlab.models.fingerprint.weights_fingerprint`): its
    config (minus where it was loaded from), chat template and vocabulary, and every weight; the same
    files at another path give the same fingerprint, a single changed weight another one."""
    from embedlab.models.fingerprint import weights_fingerprint

    config = {k: v for k, v in model.config.to_dict().items() if k not in _PLACE_KEYS}
    config["chat_template"] = getattr(tokenizer, "chat_template", None)
    config["vocab"] = sorted(tokenizer.get_vocab().items())
    return weights_fingerprint(json.dumps(config, sort_keys=True, default=str), model.state_dict())


class TransformersLLM(LLM):
    """A causal LM run locally in fp32: an alias (``smollm2-135m``), a .gguf file or an HF directory.

    ``yes_no`` runs batched forward passes (left padding, with position ids counted from each row's first
    real token, only the last position's logits) and returns
    logsumexp over the yes-token spellings minus logsumexp over the no-token spellings."""

    def __init__(self, model: str, *, batch_size: int = 32, show_progress: ShowProgress = False) -> None:
        super().__init__()
        from embedlab.models.backbone import resolve_source

        target, where = resolve_source(model)
        path = Path(target)
        if not path.is_dir():
            raise ModelNotFoundError(
                f"--llm {model}: only local causal LMs (an alias, a .gguf file or a directory) "
                f"run offline; for a hosted model use --llm-endpoint URL"
            )
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise ModelNotFoundError(
                f"--llm {model}: not a causal language model ({str(exc).splitlines()[0]})"
            ) from None
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.name = model
        self.where = where
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._fp: str | None = None  # the weight fingerprint, computed on first use (the model is never trained)
        self._yes = self._token_ids(YES_WORDS)
        self._no = self._token_ids(NO_WORDS)
        if not self._yes or not self._no:
            raise ConfigError(
                f"--llm {model}: its tokenizer has no single token for 'yes'/'no'; the LLM assigner needs one"
            )

    def _token_ids(self, words: Sequence[str]) -> list[int]:
        ids = set()
        for w in words:
            enc = self.tokenizer.encode(w, add_special_tokens=False)
            if len(enc) == 1:
                ids.add(enc[0])
        return sorted(ids)

    @property
    def fingerprint(self) -> str:
        if self._fp is None:
            self._fp = _llm_fingerprint(self.model, self.tokenizer)
        return f"transformers:{self._fp}"

    def render(self, turn: Turn) -> str:
        system, user = turn
        if getattr(self.tokenizer, "chat_template", None):
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return (f"{system}\n\n" if system else "") + f"{user}\nAnswer:"

    def _batches(self, texts: list[str], desc: str):
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with progress_bar(self.show_progress, total=len(texts), desc=desc, unit="prompt") as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                yield idx
                bar.update(len(idx))

    def generate(
        self, turns: Sequence[Turn], *, max_new_tokens: int = 160, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        import torch

        texts = [self.render(t) for t in turns]
        out: list[str] = [""] * len(texts)
        for idx in self._batches(texts, "propose"):
            enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id)
            if temperature > 0:
                torch.manual_seed(seed)
                kw.update(do_sample=True, temperature=temperature, top_p=0.95)
            else:
                kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            with torch.inference_mode():
                gen = self.model.generate(**enc, **kw)
            for row, i in enumerate(idx):
                out[i] = self.tokenizer.decode(gen[row, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            self.calls += len(idx)
        return out

    def yes_no(self, turns: Sequence[Turn]) -> list[float | None]:
        import torch

        texts = [self.render(t) for t in turns]
        out: list[float | None] = [None] * len(texts)
        for idx in self._batches(texts, "assign"):
            enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            # left padding: positions count from each row's first real token (models with absolute position
            # embeddings, e.g. GPT-2, would otherwise see shifted positions; RoPE models are unaffected)
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = (
                    self.model(
                        input_ids=enc["input_ids"],
                        attention_mask=enc["attention_mask"],
                        position_ids=positions,
                        logits_to_keep=1,
                    )
                    .logits[:, -1]
                    .float()
                )
            lp = logits.log_softmax(-1)
            odds = torch.logsumexp(lp[:, self._yes], -1) - torch.logsumexp(lp[:, self._no], -1)
            for row, i in enumerate(idx):
                out[i] = float(odds[row])
            self.calls += len(idx)
        return out


# --- OpenAI-compatible endpoint -------------------------------------------------------------------------


class EndpointLLM(LLM):
    """An OpenAI-compatible ``/chat/completions`` endpoint. The key is read from the environment variable
    ``key_env`` (no key: no Authorization header, as local servers expect).

    ``yes_no`` asks for one token with ``logprobs`` and ``top_logprobs=5``; when the reply carries them,
    the score is logsumexp(yes spellings) - logsumexp(no spellings) over the top tokens (a side that is
    absent counts as the smallest returned log-probability minus 1). When it does not, the answer text is
    parsed (yes -> +5, no -> -5, anything else -> unreadable: retried, then skipped by the caller)."""

    def __init__(
        self,
        url: str,
        model: str = "default",
        *,
        key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        workers: int = 8,
        max_retries: int = 2,
    ) -> None:
        super().__init__()
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--llm-endpoint must be an http(s) URL; got {url!r}")
        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.name = model
        self.key = os.environ.get(key_env) or None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.workers = workers
        self.max_retries = max_retries
        self.logprobs_supported: bool | None = None
        self._check_reachable()

    def _check_reachable(self) -> None:
        """Fail fast, naming the URL, when nothing listens there (a TCP connect with a short timeout)."""
        from urllib.parse import urlparse

        u = urlparse(self.url)
        port = u.port or (443 if u.scheme == "https" else 80)
        try:
            with socket.create_connection((u.hostname or "", port), timeout=self.connect_timeout):
                pass
        except OSError as exc:
            raise Unavailable(f"cannot reach the LLM endpoint {self.url}: {exc.strerror or exc}") from None

    @property
    def fingerprint(self) -> str:
        return f"endpoint:{self.url}|{self.name}"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:200].replace("\n", " ")
                if exc.code in (429, 500, 502, 503, 504) and attempt < self.max_retries:
                    last = f"HTTP {exc.code}"
                    continue
                raise _HTTPFailure(
                    exc.code, f"the LLM endpoint {self.url} answered HTTP {exc.code}: {detail}"
                ) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise Unavailable(f"cannot reach the LLM endpoint {self.url}: {reason}") from None
            except json.JSONDecodeError:
                raise Unavailable(f"the LLM endpoint {self.url} did not answer JSON") from None
        raise Unavailable(f"the LLM endpoint {self.url} kept failing ({last})")

    @staticmethod
    def _messages(turn: Turn) -> list[dict[str, str]]:
        system, user = turn
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]

    @staticmethod
    def _content(reply: dict[str, Any]) -> str:
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise Unavailable("the LLM endpoint's reply has no choices[0].message.content") from None

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        if self.workers <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(fn, items))

    def generate(
        self, turns: Sequence[Turn], *, max_new_tokens: int = 160, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        def one(turn: Turn) -> str:
            body = {
                "model": self.name,
                "messages": self._messages(turn),
                "max_tokens": max_new_tokens,
                "temperature": temperature,
                "seed": seed,
            }
            return self._content(self._post(body))

        out = self._map(one, list(turns))
        self.calls += len(turns)
        return out

    def _one_yes_no(self, turn: Turn) -> float | None:
        body: dict[str, Any] = {"model": self.name, "messages": self._messages(turn), "max_tokens": 1, "temperature": 0}
        if self.logprobs_supported is not False:
            body.update(logprobs=True, top_logprobs=5)
        try:
            reply = self._post(body)
        except _HTTPFailure as exc:
            if exc.code == 400 and "logprobs" in body:  # a server that refuses logprobs: parse answers instead
                self.logprobs_supported = False
                body.pop("logprobs"), body.pop("top_logprobs")
                reply = self._post(body)
            else:
                raise
        top = _top_logprobs(reply)
        if top:
            self.logprobs_supported = True
            yes = [lp for tok, lp in top if tok.strip().lower() == "yes"]
            no = [lp for tok, lp in top if tok.strip().lower() == "no"]
            if yes or no:
                floor = min(lp for _, lp in top) - 1.0
                return _logsumexp(yes or [floor]) - _logsumexp(no or [floor])
        return parse_yes_no(self._content(reply))

    def yes_no(self, turns: Sequence[Turn]) -> list[float | None]:
        out = self._map(self._one_yes_no, list(turns))
        self.calls += len(turns)
        return out


class _HTTPFailure(Unavailable):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _top_logprobs(reply: dict[str, Any]) -> list[tuple[str, float]]:
    try:
        first = reply["choices"][0]["logprobs"]["content"][0]
    except (KeyError, IndexError, TypeError):
        return []
    pairs = [(t.get("token", ""), float(t["logprob"])) for t in first.get("top_logprobs") or [] if "logprob" in t]
    if not pairs and "logprob" in first:
        pairs = [(first.get("token", ""), float(first["logprob"]))]
    return pairs


# --- the cache ------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    from embedlab.settings import cache_dir

    return cache_dir() / "goalex-llm"


class CachedLLM(LLM):
    """Wraps a back end with a disk cache: one JSON file per (fingerprint, kind, settings, prompt).
    ``hits`` and ``misses`` count prompts; ``inner.calls`` counts what reached the model."""

    def __init__(self, inner: LLM, directory: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def _path(self, kind: str, settings: dict[str, Any], turn: Turn) -> Path:
        key = cache_key(self.inner.fingerprint, "goalex-llm", kind, settings, list(turn))
        return self.directory / key[:2] / f"{key}.json"

    def _cached(self, kind: str, settings: dict[str, Any], turns: Sequence[Turn], call: Any) -> list[Any]:
        paths = [self._path(kind, settings, t) for t in turns]
        out: list[Any] = [None] * len(turns)
        todo = []
        for i, p in enumerate(paths):
            try:
                out[i] = json.loads(p.read_text())["answer"]
                self.hits += 1
            except (OSError, ValueError, KeyError):
                todo.append(i)
        if todo:
            self.misses += len(todo)
            answers = call([turns[i] for i in todo])
            for i, a in zip(todo, answers):
                out[i] = a
                if a is not None:  # an unreadable answer is not cached: a rerun may read it
                    try:
                        write_json(
                            paths[i],
                            {
                                "fingerprint": self.inner.fingerprint,
                                "kind": kind,
                                "settings": settings,
                                "system": turns[i][0],
                                "user": turns[i][1],
                                "answer": a,
                            },
                        )
                    except OSError as exc:
                        log.warning("GoalEx LLM cache not written (%s)", exc)
        self.calls = self.inner.calls
        return out

    def generate(
        self, turns: Sequence[Turn], *, max_new_tokens: int = 160, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        settings = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "seed": seed if temperature > 0 else 0,
        }
        return self._cached(
            "generate",
            settings,
            turns,
            lambda ts: self.inner.generate(ts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed),
        )

    def yes_no(self, turns: Sequence[Turn]) -> list[float | None]:
        return self._cached("yes_no", {}, turns, self.inner.yes_no)


def open_llm(
    llm: str | None = "smollm2-135m",
    *,
    endpoint: str | None = None,
    key_env: str = "OPENAI_API_KEY",
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    show_progress: ShowProgress = False,
    batch_size: int = 32,
) -> LLM:
    """``--llm NAME`` (alias, .gguf, causal-LM directory) or ``--llm-endpoint URL`` (with ``--llm`` as the
    model name sent to it), wrapped in the disk cache unless ``cache=False``."""
    if endpoint:
        backend: LLM = EndpointLLM(endpoint, llm or "default", key_env=key_env)
    else:
        if not llm:
            raise InputError(
                "give --llm NAME (an alias such as smollm2-135m, or a causal-LM directory) or --llm-endpoint URL"
            )
        backend = TransformersLLM(llm, batch_size=batch_size, show_progress=show_progress)
    return CachedLLM(backend, cache_dir) if cache else backend
