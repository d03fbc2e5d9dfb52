"""One-time conversion of a GGUF checkpoint into a cached Hugging Face directory.

transformers dequantises GGUF tensors on load (~20 s for SmolLM2-135M) and refuses
``save_pretrained`` on such a model, so the state dict and a config without
``quantization_config`` are written by hand and atomically, into ``$EMBEDLAB_CACHE/gguf/<stem>-<key>``: the key
is :func:`embedlab.io.cache_key` with the GGUF file's SHA-256 as the fingerprint (docs/architecture.md, "Caches").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from embedlab.errors import ModelNotFoundError
from embedlab.io import atomic_path, cache_key, file_sha256, write_json
from embedlab.settings import cache_dir

log = logging.getLogger(__name__)


def _cached_digest(path: Path) -> str:
    """SHA-256 of ``path``, remembered per (path, size, mtime) so a cached load does not re-hash 100 MB."""
    index_file = cache_dir() / "gguf" / "digests.json"
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, json.JSONDecodeError):
        index = {}
    if key not in index:
        index[key] = file_sha256(path)
        try:
            write_json(index_file, index)
        except OSError:  # a read-only cache still works, it just hashes again next time
            pass
    return index[key]


def converted_dir(gguf_path: Path) -> Path:
    """Return the cached HF directory for ``gguf_path``, converting it on first use."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {gguf_path}")
    digest = _cached_digest(gguf_path)
    target = cache_dir() / "gguf" / f"{gguf_path.stem}-{cache_key(digest, 'gguf-to-hf')}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    log.warning("converting %s to a Hugging Face checkpoint (once; cached in %s)", gguf_path.name, target)
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModel.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["_name_or_path"] = gguf_path.name
    config["architectures"] = [type(model).__name__]
    config["embedlab_gguf_source"] = {"file": gguf_path.name, "sha256": digest}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        tokenizer.save_pretrained(str(tmp))
    return target


__all__ = ["converted_dir"]
