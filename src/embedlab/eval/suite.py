"""``evaluate``: a model on a selection of tasks, the library entry that ``embedlab eval`` also offers.

A thin layer over :func:`embedlab.eval.registry.select_tasks` and :func:`embedlab.eval.runner.run_task`:
one result JSON per task (MTEB-like, with per-example scores), encoded through the embedding cache.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedlab.eval.registry import TaskSpec, select_tasks
from embedlab.eval.runner import EmbeddingCache, run_task


def evaluate(
    model: Any,
    tasks: str | Sequence[str | TaskSpec] | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    task_dirs: Sequence[str | os.PathLike] | None = None,
    prompts: dict[str, str | None] | None = None,
    dtype: str = "fp32",
    runtime: str | None = None,
    instruction_template: str | None = None,
    cache: bool = True,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``model`` (an :class:`~embedlab.models.Embedder`, or a name for :func:`embedlab.load`) and
    return each task's result dict by task name (``result["main_score"]``, ``result["scores"]``, ...).

    ``tasks``: ``"quick"`` (the default without ``task_dirs``), ``"all"``, ``"NAME,NAME"`` (any case), or a
    list of names and :class:`TaskSpec` objects; ``task_dirs`` adds task folders (their tasks are the default
    when given). ``out_dir``: where the result JSONs are written (default: a temporary folder, removed).
    ``prompts`` maps the roles ``query`` and ``document`` to the model's named prompts; ``instruction_template``
    (e.g. ``"Instruct: {task}\\nQuery: {text}"``) prefixes query-side texts with each task's instruction.
    ``dtype``/``runtime`` as for :meth:`Embedder.encode`; ``cache=False`` skips the on-disk embedding cache.
    Unlike the CLI, a task that fails raises (nothing is swallowed)."""
    if isinstance(model, (str, os.PathLike)):
        from embedlab.models import Embedder

        model = Embedder.from_pretrained(model)
    dirs = list(task_dirs or [])
    if tasks is None or isinstance(tasks, str):
        chosen = select_tasks(tasks, dirs)
    else:
        chosen = [
            t for item in tasks for t in ([item] if isinstance(item, TaskSpec) else select_tasks(str(item), dirs))
        ]
    embedding_cache = EmbeddingCache() if cache else None
    with tempfile.TemporaryDirectory(prefix="embedlab-eval-") as scratch:
        target = Path(out_dir) if out_dir is not None else Path(scratch)
        return {
            task.name: run_task(
                task,
                model,
                target,
                prompts=prompts,
                dtype=dtype,
                cache=embedding_cache,
                runtime=runtime,
                instruction_template=instruction_template,
            )
            for task in chosen
        }


__all__ = ["evaluate"]
