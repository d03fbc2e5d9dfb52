"""Load any tokenizer the quality report can measure, behind one small interface.

A *tokenizer spec* is one of:

- a packaged model alias (``minilm-l6``, ``smollm2-135m``; the GGUF's tokenizer is read from the
  GGUF metadata by transformers, without loading the weights);
- a Hugging Face directory (``tokenizer.json``, else whatever ``AutoTokenizer`` can turn into a fast
  tokenizer), a ``tokenizer.json`` file, a SentencePiece ``.model`` file, a ``.gguf`` file, or a
  Mistral "tekken" JSON file;
- ``pypi:turkish-tokenizer``: the rule-based root/suffix tokenizer of Bayram et al.'s
  ``turkish-tokenizer`` wheel (0.2.26; 1.x is a Rust sdist that cannot build offline);
- ``pypi:mistral-common[:FILE]``: a tokenizer file shipped in the ``mistral-common`` wheel's
  ``data/`` folder, located without importing the package (``tokenizer.model.v1`` by default:
  Mistral-7B's SentencePiece model; ``tekken_240718`` is the tekken BPE that Mistral-NeMo uses);
- ``pypi:openai-whisper[:gpt2|multilingual]``: the tiktoken rank files in ``openai-whisper``'s
  ``assets/`` (``gpt2`` is GPT-2's 50,257-token byte-level BPE), read without importing the package;
- an in-memory ``tokenizers.Tokenizer`` or a transformers fast tokenizer (for code that extends a
  vocabulary and wants to measure it before saving).

Every backend answers the same two questions: the token ids of a text with their *character*
offsets (no special tokens added), and the surface string of a token with its word-start marker
removed (see ``LoadedTokenizer.piece``). Word-start / continuation markers per family:

=================== ============================================== ==========================================
family              marker                                         how ``piece`` removes it
=================== ============================================== ==========================================
``wordpiece``       ``##`` on word-internal pieces (BERT)          strip a leading ``##``
``sentencepiece``   ``▁`` (U+2581) on word-initial pieces          the tokenizer's decoder, then strip spaces
``byte-level``      ``Ġ`` (byte-level space) on word-initial       the ByteLevel decoder (bytes -> UTF-8, a
                    pieces (GPT-2, Llama-3, SmolLM2, tekken)       partial character -> U+FFFD), strip spaces
``turkish-rules``   none; a space is its own token and             the token string; ``<uppercase>`` and
                    ``<uppercase>`` marks a capital                the space token give ``""``
=================== ============================================== ==========================================
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from embedlab.errors import ConfigError, ModelNotFoundError

PYPI_PREFIX = "pypi:"
# Data-only packages (their tokenizer files are read, the package is never imported) are installed apart from
# site-packages: an importable mistral_common makes transformers route Mistral tokenizers through it.
DATA_PACKAGES_ENV = "EMBEDLAB_TOKENIZER_DATA"
_DATA_DIR_HINT = "pip install --no-deps --target \"$(python -c 'import sys; print(sys.prefix)')/tokenizer-data\" "
PYPI_TOKENIZERS = {
    "turkish-tokenizer": "pip install turkish-tokenizer==0.2.26",
    "mistral-common": _DATA_DIR_HINT + "mistral-common==1.13.1",
    "openai-whisper": _DATA_DIR_HINT + "openai-whisper==20250625",
}
MISTRAL_DEFAULT_FILE = "tokenizer.model.v1"
# GPT-2's pre-tokenisation regex (the split tiktoken applies before its byte-level BPE)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@dataclass
class Encoding:
    """One text's tokens: ids, character offsets into the text, and (optionally) surface pieces
    when the backend knows them better than ``piece(id)`` does (several strings sharing one id)."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    pieces: list[str] | None = None


class LoadedTokenizer(ABC):
    """A tokenizer under measurement: what the metrics need and nothing more."""

    name: str  # what the user typed, or a short label
    source: str  # where it came from, in words
    family: str  # wordpiece | sentencepiece | byte-level | turkish-rules | bpe | unigram | wordlevel
    vocab_size: int  # every id it can emit, added tokens included
    unk_id: int | None  # None when the tokenizer cannot produce an unknown token (byte-level)

    @abstractmethod
    def encode_batch(self, texts: Sequence[str]) -> list[Encoding]:
        """Encode texts without special tokens (no [CLS]/BOS), with character offsets."""

    @abstractmethod
    def piece(self, token_id: int) -> str:
        """The token's surface string: the id decoded on its own (as the Turkish paper's code does),
        with the word-start / continuation marker and surrounding whitespace removed."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, family={self.family}, vocab_size={self.vocab_size})"


class HFTokenizer(LoadedTokenizer):
    """A ``tokenizers.Tokenizer`` (the Rust backend of every transformers fast tokenizer)."""

    def __init__(self, backend: Any, *, name: str, source: str, vocab_size: int | None = None) -> None:
        from tokenizers import Tokenizer

        # a private copy: padding/truncation settings of the owner must not change the counts
        self._tok = Tokenizer.from_str(backend.to_str())
        self._tok.no_padding()
        self._tok.no_truncation()
        spec = json.loads(self._tok.to_str())
        self.name, self.source = name, source
        self.family = _family(spec)
        self.vocab_size = int(vocab_size or self._tok.get_vocab_size(with_added_tokens=True))
        unk = (spec.get("model") or {}).get("unk_token")
        self.unk_id = self._tok.token_to_id(unk) if unk else None
        self._piece = lru_cache(maxsize=None)(self._piece_uncached)

    @property
    def backend(self) -> Any:
        return self._tok

    def encode_batch(self, texts: Sequence[str]) -> list[Encoding]:
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [Encoding(list(e.ids), [tuple(o) for o in e.offsets]) for e in encs]

    def _piece_uncached(self, token_id: int) -> str:
        if self.family == "wordpiece":
            tok = self._tok.id_to_token(token_id) or ""
            return tok[2:].strip() if tok.startswith("##") else tok.strip()
        return self._tok.decode([token_id], skip_special_tokens=False).replace("\u2581", " ").strip()

    def piece(self, token_id: int) -> str:
        return self._piece(token_id)


class SentencePieceTokenizer(LoadedTokenizer):
    """A SentencePiece ``.model`` file run by the ``sentencepiece`` library itself."""

    def __init__(self, path: Path, *, name: str, source: str) -> None:
        try:
            import sentencepiece as spm
        except ImportError:
            raise ConfigError(f"{path} is a SentencePiece model: pip install sentencepiece==0.2.3") from None
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"{path} is not a SentencePiece model: {str(exc).splitlines()[0]}") from None
        self.name, self.source, self.family = name, source, "sentencepiece"
        self.vocab_size = int(self._sp.get_piece_size())
        unk = int(self._sp.unk_id())
        self.unk_id = unk if unk >= 0 else None
        self._piece = lru_cache(maxsize=None)(lambda i: self._sp.decode([i]).strip())

    def encode_batch(self, texts: Sequence[str]) -> list[Encoding]:
        protos = self._sp.encode(list(texts), return_type="proto")
        out = []
        for text, proto in zip(texts, protos):
            char_at = _byte_to_char(text)
            out.append(
                Encoding([p.id for p in proto.pieces], [(char_at[p.begin], char_at[p.end]) for p in proto.pieces])
            )
        return out

    def piece(self, token_id: int) -> str:
        return self._piece(token_id)


class TurkishRulesTokenizer(LoadedTokenizer):
    """The ``turkish-tokenizer`` wheel (Bayram et al.): longest-prefix match over roots, then suffixes,
    then a BPE list, per space-separated word; lower-cases and emits ``<uppercase>`` before a capital.
    Allomorphs share an id ("lar"/"ler"), so the surface pieces come from its token strings."""

    def __init__(self, *, name: str, source: str) -> None:
        try:
            from turkish_tokenizer import TurkishTokenizer
        except ImportError:
            raise ModelNotFoundError(f"{name} needs the package: {PYPI_TOKENIZERS['turkish-tokenizer']}") from None
        self._tt = TurkishTokenizer()
        self.name, self.source, self.family = name, source, "turkish-rules"
        self.vocab_size = int(self._tt.vocab_size)
        self.unk_id = int(self._tt.unknown_marker["id"])
        self._markers = {self._tt.uppercase_marker["token"], self._tt.space_marker["token"]}

    def encode_batch(self, texts: Sequence[str]) -> list[Encoding]:
        out = []
        for text in texts:
            tokens, _ = self._tt.tokenize_text(text)
            ids, offsets, pieces, pos = [], [], [], 0
            for t in tokens:
                tok = t["token"]
                width = 0 if tok == "<uppercase>" else 1 if tok == "<unknown>" else len(tok)
                end = min(pos + width, len(text))
                ids.append(int(t["id"]))
                offsets.append((pos, end))
                pieces.append("" if tok in self._markers else tok.strip())
                pos = end
            out.append(Encoding(ids, offsets, pieces))
        return out

    def piece(self, token_id: int) -> str:
        forms = self._tt.reverse_dict.get(token_id, [""])
        return "" if forms[0] in self._markers else forms[0].strip()


def _family(spec: dict[str, Any]) -> str:
    """Classify a tokenizer.json by its model and decoder (see the module docstring)."""
    model = (spec.get("model") or {}).get("type", "")
    if model == "WordPiece":
        return "wordpiece"
    blob = json.dumps({k: spec.get(k) for k in ("decoder", "pre_tokenizer", "normalizer")})
    if '"ByteLevel"' in blob:
        return "byte-level"
    if '"Metaspace"' in blob or "\u2581" in blob or "\\u2581" in blob:
        return "sentencepiece"
    return model.lower() or "unknown"


def _byte_to_char(text: str) -> list[int]:
    """Map every UTF-8 byte position of ``text`` (and its end) to the index of its character."""
    index = []
    for i, ch in enumerate(text):
        index.extend([i] * len(ch.encode("utf-8")))
    index.append(len(text))
    return index


def tokenizer_data_dirs() -> list[Path]:
    """Where data-only packages are looked for first: ``$EMBEDLAB_TOKENIZER_DATA``, then
    ``<sys.prefix>/tokenizer-data`` (where ``make setup`` installs them)."""
    dirs = [Path(os.environ[DATA_PACKAGES_ENV])] if os.environ.get(DATA_PACKAGES_ENV) else []
    return dirs + [Path(sys.prefix) / "tokenizer-data"]


def package_dir(module: str) -> Path | None:
    """The folder of package ``module``: in a tokenizer-data dir, else wherever it is importable; None if absent."""
    for d in tokenizer_data_dirs():
        if (d / module / "__init__.py").is_file():
            return d / module
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _package_root(dist: str, module: str) -> Path:
    root = package_dir(module)
    if root is None:
        raise ModelNotFoundError(f"tokenizer 'pypi:{dist}' needs the package: {PYPI_TOKENIZERS[dist]}")
    return root


def _tekken(path: Path, *, name: str, source: str) -> HFTokenizer:
    """Mistral's tekken JSON (tiktoken-style ranked byte strings + a split regex) as a byte-level BPE
    ``tokenizers.Tokenizer``, via transformers' tiktoken converter (merges rebuilt from the ranks).
    Ids are ranks; Mistral itself offsets them by its ``default_num_special_tokens`` control tokens,
    which ``vocab_size`` (``default_vocab_size``) includes."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    data = json.loads(path.read_text(encoding="utf-8"))
    cfg = data["config"]
    n_inner = int(cfg["default_vocab_size"]) - int(cfg["default_num_special_tokens"])
    ranks = {base64.b64decode(v["token_bytes"]): int(v["rank"]) for v in data["vocab"][:n_inner]}

    class _Converter(TikTokenConverter):
        def load_tiktoken_bpe(self, tiktoken_url: str) -> dict[bytes, int]:  # type: ignore[override]
            return ranks

    backend = _Converter(vocab_file=str(path), pattern=cfg["pattern"]).converted()
    return HFTokenizer(backend, name=name, source=source, vocab_size=int(cfg["default_vocab_size"]))


def _tiktoken_file(
    path: Path, *, name: str, source: str, pattern: str = GPT2_PATTERN, n_special: int = 0
) -> HFTokenizer:
    """A tiktoken rank file (``base64-bytes rank`` per line) as a byte-level BPE, split by ``pattern``."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)

    class _Converter(TikTokenConverter):
        def load_tiktoken_bpe(self, tiktoken_url: str) -> dict[bytes, int]:  # type: ignore[override]
            return ranks

    backend = _Converter(vocab_file=str(path), pattern=pattern).converted()
    return HFTokenizer(backend, name=name, source=source, vocab_size=len(ranks) + n_special)


def _is_tekken(path: Path) -> bool:
    if path.suffix != ".json" or path.name == "tokenizer.json":
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    return b'"config"' in head and b'"pattern"' in head


def _from_file(path: Path, name: str) -> LoadedTokenizer:
    if path.suffix == ".gguf":
        return _from_gguf(path, name=name, source=f"GGUF file {path}")
    if path.suffix == ".model" or ".model." in path.name:
        return SentencePieceTokenizer(path, name=name, source=f"SentencePiece model {path}")
    if _is_tekken(path):
        return _tekken(path, name=name, source=f"tekken file {path}")
    if path.suffix == ".tiktoken":
        return _tiktoken_file(path, name=name, source=f"tiktoken file {path} (GPT-2 split regex)")
    if path.suffix == ".json":
        from tokenizers import Tokenizer

        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
            raise ConfigError(f"{path} is not a tokenizer.json: {str(exc).splitlines()[0]}") from None
        return HFTokenizer(backend, name=name, source=f"tokenizer.json {path}")
    raise ConfigError(
        f"{path}: not a tokenizer file (expected tokenizer.json, a SentencePiece .model, a tekken .json or a .gguf)"
    )


def _from_gguf(path: Path, *, name: str, source: str) -> HFTokenizer:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return HFTokenizer(tok.backend_tokenizer, name=name, source=source, vocab_size=len(tok))


def _from_dir(path: Path, name: str, source: str) -> HFTokenizer:
    if (path / "tokenizer.json").is_file():
        tok = _from_file(path / "tokenizer.json", name)
        tok.source = source
        return tok
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # OSError, ValueError, KeyError...: whatever the folder lacks
        raise ConfigError(f"{path}: no tokenizer found ({str(exc).splitlines()[0]})") from None
    if getattr(tok, "backend_tokenizer", None) is None:
        raise ConfigError(
            f"{path}: the tokenizer has no fast (tokenizers) backend; convert it or pass its tokenizer.json"
        )
    return HFTokenizer(tok.backend_tokenizer, name=name, source=source, vocab_size=len(tok))


def _from_pypi(spec: str) -> LoadedTokenizer:
    body = spec[len(PYPI_PREFIX) :]
    dist, _, file = body.partition(":")
    if dist == "turkish-tokenizer":
        if file:
            raise ConfigError(f"{spec}: turkish-tokenizer ships one tokenizer; write pypi:turkish-tokenizer")
        _package_root(dist, "turkish_tokenizer")
        return TurkishRulesTokenizer(name=spec, source="turkish-tokenizer wheel (roots + suffixes + BPE lists)")
    if dist == "mistral-common":
        data = _package_root(dist, "mistral_common") / "data"
        file = file or MISTRAL_DEFAULT_FILE
        path = data / file
        if not path.is_file() and (data / f"{file}.json").is_file():
            path = data / f"{file}.json"
        if not path.is_file():
            shipped = ", ".join(sorted(p.name for p in data.iterdir() if p.is_file()))
            raise ModelNotFoundError(f"{spec}: mistral-common has no data/{file}; it ships: {shipped}")
        tok = _from_file(path, name=spec)
        tok.source = f"mistral-common wheel, data/{path.name}"
        return tok
    if dist == "openai-whisper":
        assets = _package_root(dist, "whisper") / "assets"
        file = file or "gpt2"
        path = assets / f"{file}.tiktoken"
        if not path.is_file():
            raise ModelNotFoundError(f"{spec}: openai-whisper ships gpt2 and multilingual tokenizers, not {file!r}")
        # both files end before the special tokens; GPT-2 has exactly one, <|endoftext|>
        return _tiktoken_file(
            path,
            name=spec,
            source=f"openai-whisper assets/{path.name} (GPT-2 byte-level BPE)",
            n_special=1 if file == "gpt2" else 0,
        )
    raise ModelNotFoundError(
        f"unknown packaged tokenizer '{spec}': known are " + ", ".join(f"pypi:{d}" for d in PYPI_TOKENIZERS)
    )


def load_tokenizer(spec: str | os.PathLike | Any, name: str | None = None) -> LoadedTokenizer:
    """Resolve a tokenizer spec (see the module docstring) to a ``LoadedTokenizer``.

    Raises ModelNotFoundError for an unknown name or missing file/package, ConfigError for a file or
    directory that holds no usable tokenizer."""
    if isinstance(spec, LoadedTokenizer):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        backend = getattr(spec, "backend_tokenizer", None)  # a transformers fast tokenizer
        if backend is not None:
            return HFTokenizer(
                backend, name=name or type(spec).__name__, source="in-memory tokenizer", vocab_size=len(spec)
            )
        if hasattr(spec, "encode_batch") and hasattr(spec, "to_str"):  # a tokenizers.Tokenizer
            return HFTokenizer(spec, name=name or "tokenizer", source="in-memory tokenizers.Tokenizer")
        raise ConfigError(
            f"cannot measure a {type(spec).__name__}: pass a spec string, a fast tokenizer or a tokenizers.Tokenizer"
        )
    text = str(spec)
    label = name or text
    if text.startswith(PYPI_PREFIX):
        tok = _from_pypi(text)
        tok.name = label
        return tok
    from embedlab.sources.aliases import ALIASES, alias_names

    if text in ALIASES:
        alias = ALIASES[text]
        path = alias.locate()
        if alias.is_gguf:
            return _from_gguf(path, name=label, source=f"alias {text} ({alias.package}, GGUF metadata)")
        return _from_dir(path, label, f"alias {text} ({alias.package})")
    path = Path(text).expanduser()
    if path.is_dir():
        return _from_dir(path, label, f"directory {path}")
    if path.is_file():
        return _from_file(path, label)
    raise ModelNotFoundError(
        f"unknown tokenizer '{text}': not an alias ({alias_names()}), a directory, a tokenizer file, "
        f"or a packaged tokenizer ({', '.join(PYPI_PREFIX + d for d in PYPI_TOKENIZERS)})"
    )
