"""The GGUF conversion cache: its folder is keyed through embedlab.io.cache_key over the file's SHA-256."""

from __future__ import annotations

import hashlib

from embedlab.io import cache_key
from embedlab.sources.gguf import converted_dir


def test_converted_dir_is_keyed_by_cache_key_over_the_files_sha256(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EMBEDLAB_CACHE", str(cache))
    gguf = tmp_path / "tiny.Q4_1.gguf"
    gguf.write_bytes(b"not really a gguf file")
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    target = cache / "gguf" / f"tiny.Q4_1-{cache_key(digest, 'gguf-to-hf')}"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"")
    assert converted_dir(gguf) == target  # an existing conversion is found under that key: nothing converts

    gguf.write_bytes(b"other weights")  # another file content: another key, so the old folder is not a hit
    other = cache / "gguf" / f"tiny.Q4_1-{cache_key(hashlib.sha256(b'other weights').hexdigest(), 'gguf-to-hf')}"
    other.mkdir(parents=True)
    (other / "config.json").write_text("{}")
    (other / "model.safetensors").write_bytes(b"")
    assert converted_dir(gguf) == other
