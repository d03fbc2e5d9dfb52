"""What every command group shares: the consoles, the option declarations, the model loader, the table
helper, the output-path check and the note printed when a command is interrupted.

Library imports stay inside functions, so ``embedlab --help`` does not import torch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True, soft_wrap=True)

try:  # the leaf module of model names (older trees kept it in embedlab.models)
    from embedlab.sources.aliases import DEFAULT_MODEL
except ImportError:  # pragma: no cover
    from embedlab.models.aliases import DEFAULT_MODEL  # noqa: F401


class Attention(str, Enum):
    causal = "causal"
    bidirectional = "bidirectional"


class DType(str, Enum):
    auto = "auto"  # bf16 where the hardware runs it natively, else fp32
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"  # the backbone's linear layers dynamically quantised to int8 (CPU); see docs/encode_throughput.md


class Runtime(str, Enum):
    torch = "torch"
    onnx = "onnx"  # the backbone exported to ONNX and run by ONNX Runtime (CPU; embedlab.models.onnx_runtime)


def _precisions() -> tuple[str, ...]:
    try:
        from embedlab.vectors import PRECISIONS
    except ImportError:  # pragma: no cover - the vectors module is the one list; this only keeps --help alive
        return ("float32", "float16", "int8", "binary")
    return tuple(PRECISIONS)


#: How vectors are stored (embedlab.vectors.PRECISIONS, the one list).
Precision = Enum("Precision", {p: p for p in _precisions()}, type=str)  # type: ignore[misc]
FLOAT32 = Precision("float32")

# rich reads [onnx] as markup and drops it: every help text with brackets goes through escape()
RUNTIME_HELP = escape(
    "torch, or onnx: the backbone in ONNX Runtime (CPU, fp32 or int8; exported once and cached; "
    "pip install 'embedlab[onnx]')"
)
DTYPE_HELP = (
    "bf16 autocast is ~3x faster on CPUs with native bf16 (AVX-512 BF16, AMX) and ~5x slower without; auto picks; "
    "int8 = dynamic int8 linear layers (CPU, approximate: see docs/encode_throughput.md)"
)
MODEL_HELP = "alias, saved embedder, HF directory, .gguf file or hub id"

# The options declared once (defaults stay in each signature, as typer's Annotated style wants).
ModelOpt = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
ModelArg = Annotated[str, typer.Argument(help=MODEL_HELP)]
PoolingOpt = Annotated[
    str | None,
    typer.Option(
        "--pooling", help="override the pooling head: cls|mean|weighted_mean|last_token|latent_attention|multi_layer"
    ),
]
AttentionOpt = Annotated[Attention | None, typer.Option("--attention", help="override the attention mode (decoders)")]
DTypeOpt = Annotated[DType, typer.Option("--dtype", help=DTYPE_HELP)]
RuntimeOpt = Annotated[Runtime, typer.Option("--runtime", help=RUNTIME_HELP)]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="write into a non-empty --out folder: replace what embedlab wrote there, keep other files"
    ),
]


def load_embedder(model: str, pooling: str | None = None, attention: Attention | None = None, **kw: Any) -> Any:
    """``Embedder.from_pretrained`` behind a status line."""
    from embedlab.models import Embedder

    with err.status(f"loading {model}…"):
        return Embedder.from_pretrained(model, pooling=pooling, attention=attention.value if attention else None, **kw)


def wide(console: Console | None = None) -> Console:
    """The console for wide tables: stdout, or 200 columns when stdout is a pipe (which gets 80 by default)."""
    return out if out.is_terminal else Console(width=200)


def show_table(
    rows: Iterable[Sequence[Any]],
    columns: Sequence[str | tuple[str, str]] = (),
    *,
    title: str | None = None,
    caption: str | None = None,
    console: Console | None = None,
    no_wrap: bool = False,
    sections: Iterable[bool] | None = None,
) -> None:
    """Print one rich table: ``columns`` are names or (name, justify); cells are str()-ed; a dict or list
    cell is shown as JSON. No columns: a header-less key/value table."""
    import json

    table = Table(title=title, caption=caption, show_header=bool(columns))
    for col in columns or ("", ""):
        name, just = (col, "left") if isinstance(col, str) else col
        table.add_column(name, justify=just, no_wrap=no_wrap)  # type: ignore[arg-type]
    ends = iter(sections) if sections is not None else None
    for row in rows:
        cells = [json.dumps(c) if isinstance(c, (dict, list)) else str(c) for c in row]
        table.add_row(*cells, end_section=next(ends) if ends is not None else False)
    (console or out).print(table)


def show_mapping(mapping: dict[str, Any], title: str | None = None) -> None:
    show_table(mapping.items(), title=title)


def output_folder(path: Path, overwrite: bool = False, flag: str = "--out") -> Path:
    """Refuse an output folder that cannot be used, before any model loads (see embedlab.io.check_output)."""
    from embedlab.io import check_output

    return check_output(path, folder=True, overwrite=overwrite, flag=flag)


def output_file(path: Path | None, flag: str) -> Path | None:
    """Refuse an output file path that cannot be written, before any work (None passes)."""
    if path is None:
        return None
    from embedlab.io import check_output

    return check_output(path, folder=False, flag=flag)


def input_file(path: Path | None, flag: str) -> Path | None:
    """Refuse an input path that does not exist, before any model loads (None and ``-`` pass)."""
    from embedlab.errors import InputError

    if path is None or str(path) == "-":
        return path
    if not Path(path).exists():
        raise InputError(f"{flag} {path}: not found")
    return path


def read_texts(path: Any, *, stdin_text: str | None = None) -> list[str]:
    """The one text reader, :func:`embedlab.corpus.read_texts`."""
    from embedlab.corpus import read_texts as read

    return read(path, stdin_text=stdin_text)


_interrupt_note: list[str] = []


@contextmanager
def on_interrupt(note: str) -> Iterator[None]:
    """Within this block, a Ctrl-C makes ``embedlab`` say ``note`` (what was kept, how to resume) as it exits 130."""
    _interrupt_note.append(note)
    try:
        yield
    except KeyboardInterrupt:
        raise  # the note stays for main to print
    except BaseException:
        _interrupt_note.pop()
        raise
    else:
        _interrupt_note.pop()


def interrupt_note() -> str:
    return _interrupt_note[-1] if _interrupt_note else "nothing half-written was kept (outputs are written atomically)"


class RichProgress:
    """A progress factory (:mod:`embedlab.progress`) that draws every bar as one task of a rich ``Progress``
    on ``console`` (default: stderr), status lines (``write``) above them:
    ``with RichProgress() as bars: tokenizer_metrics(..., show_progress=bars)``. ``transient`` clears the
    bars when the block ends. Rich allows one live display at a time: not inside ``err.status``."""

    def __init__(self, console: Console | None = None, *, transient: bool = True) -> None:
        from rich.progress import Progress

        self.progress = Progress(console=console or err, transient=transient)

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, *, total: float | None = None, desc: str = "", unit: str = "it", initial: float = 0) -> RichBar:
        return RichBar(self.progress, total=total, desc=desc, initial=initial)


class RichBar:
    """One task of a rich ``Progress``, as an :class:`embedlab.progress.ProgressBar`."""

    def __init__(self, progress: Any, *, total: float | None, desc: str, initial: float = 0) -> None:
        self.progress, self.total, self.n = progress, total, initial
        self.task = progress.add_task(escape(desc), total=total, completed=initial)

    def update(self, n: float = 1) -> None:
        self.n += n
        self.progress.advance(self.task, n)

    def set_description(self, desc: str) -> None:
        self.progress.update(self.task, description=escape(desc))

    def write(self, msg: str) -> None:
        self.progress.console.print(msg, highlight=False)

    def close(self) -> None:
        self.progress.stop_task(self.task)

    def __enter__(self) -> RichBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_model(name: str, *, word_vectors: bool = False) -> None:
    """Refuse a model name that cannot load, without loading it: an unknown alias or path, a folder that is no
    model, or a hub id neither in the local cache nor reachable (``word_vectors``: a .txt/.vec file is fine too)."""
    p = Path(name).expanduser()
    if p.is_file() and (p.suffix.lower() == ".gguf" or (word_vectors and p.suffix.lower() in (".txt", ".vec"))):
        return
    try:
        from embedlab.sources.aliases import ALIASES
        from embedlab.sources.resolve import hub_reachable, resolve_source
    except ImportError:  # pragma: no cover - trees before the sources module: the load itself says it
        return
    if name in ALIASES:
        ALIASES[name].locate()
        return
    target, where = resolve_source(name)
    if not where.startswith("hub id"):
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(target, "config.json"), str) or hub_reachable():
        return
    from embedlab.errors import ModelNotFoundError
    from embedlab.sources.aliases import alias_names

    raise ModelNotFoundError(
        f"unknown model '{name}': not an alias ({alias_names()}) or directory, and the Hugging Face hub "
        "is not reachable (no network, or HF_HUB_OFFLINE=1) and it is not in the local cache"
    )
