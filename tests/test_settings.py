"""embedlab.settings: the cache and data directories, from the environment or found next to the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

import embedlab.settings as settings
from embedlab.settings import cache_dir, data_dir


def test_cache_dir_is_the_variable_else_the_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.setenv("EMBEDLAB_CACHE", "~/somewhere")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / "somewhere"  # ~ expanded
    monkeypatch.delenv("EMBEDLAB_CACHE")
    assert cache_dir() == tmp_path / "home" / ".cache" / "embedlab"


def test_data_dir_variable_wins_even_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDLAB_DATA", str(tmp_path / "not-there"))
    assert data_dir() == tmp_path / "not-there"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EMBEDLAB_DATA", "~/d")
    assert data_dir() == tmp_path / "d"


@pytest.fixture
def fake_checkout(tmp_path, monkeypatch):
    """``tmp/work/checkout/src/embedlab/settings.py`` as the module's file; no EMBEDLAB_DATA; folders
    outside ``tmp`` (a real ``/tmp/shared/data`` of this machine, say) are invisible."""
    module = tmp_path / "work" / "checkout" / "src" / "embedlab" / "settings.py"
    module.parent.mkdir(parents=True)
    module.write_text("")
    monkeypatch.setattr(settings, "__file__", str(module))
    monkeypatch.delenv("EMBEDLAB_DATA", raising=False)
    elsewhere = tmp_path / "elsewhere" / "cwd"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    real_is_dir = Path.is_dir
    monkeypatch.setattr(Path, "is_dir", lambda self: Path(self).is_relative_to(tmp_path) and real_is_dir(self))
    return tmp_path


def test_data_dir_is_shared_data_beside_the_checkout(fake_checkout):
    shared = fake_checkout / "work" / "shared" / "data"  # ../shared/data seen from the checkout
    shared.mkdir(parents=True)
    assert data_dir() == shared


def test_data_dir_falls_back_to_the_current_folders_sibling_then_none(fake_checkout):
    assert data_dir() is None
    beside_cwd = fake_checkout / "elsewhere" / "shared" / "data"
    beside_cwd.mkdir(parents=True)
    assert data_dir() == beside_cwd
    (fake_checkout / "elsewhere" / "shared" / "data").rmdir()
    (fake_checkout / "elsewhere" / "shared" / "data").write_text("a file is not a data directory")
    assert data_dir() is None


def test_a_file_named_like_the_data_dir_is_not_taken(fake_checkout):
    (fake_checkout / "work" / "shared").mkdir(parents=True)
    (fake_checkout / "work" / "shared" / "data").write_text("not a folder")
    assert data_dir() is None
    assert isinstance(cache_dir(), Path)
