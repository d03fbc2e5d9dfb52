"""embedlab.sources.gguf: a GGUF file becomes a cached HF folder once, keyed through embedlab.io.cache_key
over the file's SHA-256.

The GGUF is a tiny random Llama written here with the ``gguf`` package (float32, no quantisation), so the
converted weights can be compared with the arrays that went into the file."""

from __future__ import annotations

import hashlib
import json
import os

import gguf as gguf_lib
import numpy as np
import pytest
import torch

from embedlab.errors import ModelNotFoundError
from embedlab.io import cache_key
from embedlab.sources import gguf as conv

V, H, FF, HEADS = 16, 8, 16, 2


def write_tiny_gguf(path, seed=0):
    """A one-block Llama GGUF; returns {gguf tensor name: array written}."""
    rng = np.random.default_rng(seed)
    w = gguf_lib.GGUFWriter(str(path), "llama")
    w.add_context_length(32)
    w.add_embedding_length(H)
    w.add_block_count(1)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(1)
    w.add_rope_dimension_count(H // HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(V)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"▁w{i}" for i in range(V - 3)])
    w.add_token_scores([0.0] * V)
    w.add_token_types([2, 3, 3] + [1] * (V - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    kv = H // HEADS
    shapes = {
        "token_embd.weight": (V, H),
        "output_norm.weight": (H,),
        "blk.0.attn_norm.weight": (H,),
        "blk.0.ffn_norm.weight": (H,),
        "blk.0.attn_q.weight": (H, H),
        "blk.0.attn_k.weight": (kv, H),
        "blk.0.attn_v.weight": (kv, H),
        "blk.0.attn_output.weight": (H, H),
        "blk.0.ffn_gate.weight": (FF, H),
        "blk.0.ffn_up.weight": (FF, H),
        "blk.0.ffn_down.weight": (H, FF),
    }
    arrays = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    for name, array in arrays.items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return arrays


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "src" / "tiny.gguf"
    path.parent.mkdir()
    return path, write_tiny_gguf(path)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    assert conv.converted_dir(gguf) == target  # an existing conversion is found under that key: nothing converts

    gguf.write_bytes(b"other weights")  # another file content: another key, so the old folder is not a hit
    other = cache / "gguf" / f"tiny.Q4_1-{cache_key(hashlib.sha256(b'other weights').hexdigest(), 'gguf-to-hf')}"
    other.mkdir(parents=True)
    (other / "config.json").write_text("{}")
    (other / "model.safetensors").write_bytes(b"")
    assert conv.converted_dir(gguf) == other


def test_conversion_writes_the_files_weights_under_their_digest(cache, tiny):
    from safetensors.numpy import load_file

    path, arrays = tiny
    digest = sha256(path)
    target = conv.converted_dir(path)
    assert target == cache / "gguf" / f"tiny-{cache_key(digest, 'gguf-to-hf')}"
    assert sorted(os.listdir(cache / "gguf")) == ["digests.json", target.name]  # no temporary left
    config = json.loads((target / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaModel"]
    assert config["embedlab_gguf_source"] == {"file": "tiny.gguf", "sha256": digest}
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (H, 1, V)
    weights = load_file(str(target / "model.safetensors"))
    # tensors that GGUF stores unpermuted: exactly the arrays written into the file
    for hf, g in [
        ("embed_tokens.weight", "token_embd.weight"),
        ("norm.weight", "output_norm.weight"),
        ("layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight"),
        ("layers.0.mlp.up_proj.weight", "blk.0.ffn_up.weight"),
        ("layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight"),
    ]:
        np.testing.assert_array_equal(weights[hf], arrays[g], err_msg=hf)


def test_the_converted_folder_loads_as_the_gguf_does(cache, tiny):
    from transformers import AutoModel, AutoTokenizer

    path, _ = tiny
    target = conv.converted_dir(path)
    direct = AutoModel.from_pretrained(str(path.parent), gguf_file=path.name)
    cached = AutoModel.from_pretrained(str(target))
    text = "w1 w2 w3 w7"
    ids_direct = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)(text)["input_ids"]
    ids_cached = AutoTokenizer.from_pretrained(str(target))(text)["input_ids"]
    assert ids_cached == ids_direct
    ids = torch.tensor([ids_direct])
    with torch.no_grad():
        torch.testing.assert_close(cached(ids).last_hidden_state, direct(ids).last_hidden_state)


def test_a_second_call_neither_converts_nor_hashes_again(cache, tiny, monkeypatch):
    import transformers

    path, _ = tiny
    target = conv.converted_dir(path)
    mtime = (target / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(conv, "file_sha256", lambda p: pytest.fail("hashed again"))
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", lambda *a, **k: pytest.fail("converted again"))
    assert conv.converted_dir(path) == target
    assert (target / "model.safetensors").stat().st_mtime_ns == mtime


def test_new_content_at_the_same_path_is_a_new_conversion(cache, tiny):
    path, _ = tiny
    first = conv.converted_dir(path)
    write_tiny_gguf(path, seed=1)
    os.utime(path, ns=(1, 1))  # a different size/mtime key in the digest index
    second = conv.converted_dir(path)
    assert second.name == f"tiny-{cache_key(sha256(path), 'gguf-to-hf')}" != first.name
    assert first.is_dir() and second.is_dir()


def test_a_corrupt_or_unwritable_digest_index_only_costs_a_rehash(cache, tiny, monkeypatch):
    path, _ = tiny
    (cache / "gguf").mkdir(parents=True)
    (cache / "gguf" / "digests.json").write_text("{not json")
    assert conv._cached_digest(path) == sha256(path)
    assert list(json.loads((cache / "gguf" / "digests.json").read_text()).values()) == [sha256(path)]

    def refuse(*a, **k):
        raise OSError(30, "Read-only file system")

    (cache / "gguf" / "digests.json").unlink()
    monkeypatch.setattr(conv, "write_json", refuse)
    assert conv._cached_digest(path) == sha256(path)


def test_a_missing_file_is_model_not_found(cache, tmp_path):
    with pytest.raises(ModelNotFoundError, match="GGUF file not found: .*absent.gguf"):
        conv.converted_dir(tmp_path / "absent.gguf")


def test_a_failed_conversion_leaves_no_partial_folder(cache, tiny, monkeypatch):
    import safetensors.torch

    path, _ = tiny

    def half_then_fail(state, filename, metadata=None):
        open(filename, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        conv.converted_dir(path)
    assert os.listdir(cache / "gguf") == ["digests.json"]
    monkeypatch.undo()
    monkeypatch.setenv("EMBEDLAB_CACHE", str(cache))
    assert (conv.converted_dir(path) / "model.safetensors").stat().st_size > 4 * V * H
