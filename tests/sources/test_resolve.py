"""embedlab.sources.resolve: name -> what from_pretrained loads, in the documented order; unknown names
are one clear error that lists the aliases; the hub is tried only when it answers."""

from __future__ import annotations

import socket

import pytest

import embedlab.sources.resolve as resolve
from embedlab.errors import ModelNotFoundError
from embedlab.sources.aliases import ALIASES, ModelAlias
from embedlab.sources.resolve import from_hub_or_cache, hub_reachable, resolve_source


@pytest.fixture
def converted(monkeypatch, tmp_path):
    """gguf.converted_dir replaced by a recorder: resolve only routes to it."""
    calls = []

    def fake(path):
        calls.append(path)
        return tmp_path / "converted"

    monkeypatch.setattr(resolve.gguf, "converted_dir", fake)
    return calls


def _add_alias(monkeypatch, tmp_path, subpath):
    pkg = tmp_path / "site" / "fake_alias_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / subpath).write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    alias = ModelAlias("fake-alias", "fake-alias-dist", "fake_alias_pkg", subpath, "org/x", "d", "pip install x")
    monkeypatch.setitem(ALIASES, "fake-alias", alias)
    return pkg / subpath


def test_an_alias_resolves_to_its_packaged_folder(monkeypatch, tmp_path, converted):
    path = _add_alias(monkeypatch, tmp_path, "model")
    assert resolve_source("fake-alias") == (str(path), "alias fake-alias (fake-alias-dist)")
    assert converted == []


def test_a_gguf_alias_goes_through_the_conversion_cache(monkeypatch, tmp_path, converted):
    path = _add_alias(monkeypatch, tmp_path, "w.gguf")
    assert resolve_source("fake-alias") == (str(tmp_path / "converted"), "alias fake-alias (fake-alias-dist, GGUF)")
    assert converted == [path]


def test_an_alias_wins_over_a_folder_of_the_same_name(monkeypatch, tmp_path, converted):
    path = _add_alias(monkeypatch, tmp_path, "model")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fake-alias").mkdir()
    (tmp_path / "fake-alias" / "config.json").write_text("{}")
    assert resolve_source("fake-alias")[0] == str(path)


def test_a_gguf_file_is_converted(tmp_path, converted):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    assert resolve_source(f) == (str(tmp_path / "converted"), f"GGUF file {f}")
    assert converted == [f]


def test_a_local_model_folder_resolves_to_its_absolute_path(tmp_path, monkeypatch, converted):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve_source("m") == (str(tmp_path / "m"), "directory m")
    assert resolve_source(tmp_path / "m")[0] == str(tmp_path / "m")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_source("~/m")[0] == str(tmp_path / "m")


def test_a_folder_without_config_json_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="without config.json"):
        resolve_source(tmp_path)


def test_a_file_that_is_not_gguf_is_refused(tmp_path, converted):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=r"unknown model '.*model\.bin'"):
        resolve_source(tmp_path / "model.bin")
    assert converted == []


@pytest.mark.parametrize("name", ["bert-base-uncased", "org/model", "Org-1/model_v2.5", "a", "0/x.y"])
def test_hub_ids_pass_through(name):
    assert resolve_source(name) == (name, f"hub id {name}")


@pytest.mark.parametrize(
    "name",
    [
        "./no/such/dir",
        "/no/such/dir",
        "~nosuchuser/x",
        "bad name with spaces",
        "a/b/c",
        "-flag",
        "org/",
        "é",
    ],
)
def test_anything_else_is_one_line_listing_the_aliases(name):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_source(name)
    message = str(info.value)
    assert message == f"unknown model '{name}': not an alias (minilm-l6, smollm2-135m), a directory, or a hub id"


def test_offline_the_hub_is_never_contacted(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("connected although offline")

    monkeypatch.setattr(socket, "create_connection", boom)
    for value in ("1", "true", "YES"):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub_reachable() is False


def test_hub_reachable_connects_to_the_endpoints_host_and_port(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert hub_reachable(timeout=2) is True
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # closed now: refused at once
    assert hub_reachable(timeout=2) is False


class Loader:
    """A from_pretrained that fails as told and records its calls."""

    def __init__(self, cached: bool, remote: str | None = "ok"):
        self.cached, self.remote, self.calls = cached, remote, []

    def from_pretrained(self, name, **kwargs):
        self.calls.append(kwargs)
        if kwargs.get("local_files_only"):
            if self.cached:
                return "from cache"
            raise OSError("not in cache")
        if self.remote is None:
            raise OSError("404 Client Error: repository not found\nmore details\nand more")
        return self.remote


def test_the_local_cache_comes_first(monkeypatch):
    monkeypatch.setattr(resolve, "hub_reachable", lambda: pytest.fail("the hub was probed for a cached model"))
    loader = Loader(cached=True)
    assert from_hub_or_cache(loader, "org/m", revision="abc") == "from cache"
    assert loader.calls == [{"local_files_only": True, "revision": "abc"}]


def test_not_cached_and_no_hub_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(resolve, "hub_reachable", lambda: False)
    loader = Loader(cached=False)
    with pytest.raises(ModelNotFoundError, match=r"^unknown model 'minilm-l7': not an alias \(minilm-l6, "):
        from_hub_or_cache(loader, "minilm-l7")  # a typo of an alias: the message names the real one
    assert len(loader.calls) == 1


def test_not_cached_but_the_hub_answers(monkeypatch):
    monkeypatch.setattr(resolve, "hub_reachable", lambda: True)
    loader = Loader(cached=False, remote="from hub")
    assert from_hub_or_cache(loader, "org/m", trust_remote_code=False) == "from hub"
    assert loader.calls == [{"local_files_only": True, "trust_remote_code": False}, {"trust_remote_code": False}]
    loader = Loader(cached=False, remote=None)
    with pytest.raises(ModelNotFoundError) as info:
        from_hub_or_cache(loader, "org/m")
    assert str(info.value) == "could not load 'org/m' from the hub: 404 Client Error: repository not found"


class _NotCached:
    """A loader with nothing in the local cache (what transformers raises then)."""

    @staticmethod
    def from_pretrained(name, **kwargs):
        raise OSError(f"{name} is not in the cache")


@pytest.mark.parametrize("name", ["minilm-l7", "MiniLM-L6", "smollm2-136m"])
def test_a_near_miss_of_an_alias_is_named(monkeypatch, name):
    from embedlab.sources import resolve

    monkeypatch.setattr(resolve, "hub_reachable", lambda: False)
    with pytest.raises(ModelNotFoundError, match=r"did you mean '(minilm-l6|smollm2-135m)'\?$"):
        resolve.from_hub_or_cache(_NotCached, name)


def test_a_name_far_from_every_alias_gets_no_suggestion(monkeypatch):
    from embedlab.sources import resolve

    monkeypatch.setattr(resolve, "hub_reachable", lambda: False)
    with pytest.raises(ModelNotFoundError) as info:
        resolve.from_hub_or_cache(_NotCached, "bert-base-uncased")
    assert "did you mean" not in str(info.value)
