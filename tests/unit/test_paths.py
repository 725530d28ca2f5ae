"""hsd.paths: the cache root of a checkout and of an installed hsd; package data beside the code."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsd import paths

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """hsd as if imported from site-packages: no pyproject.toml or .git beside the package."""
    monkeypatch.setattr(paths, "PACKAGE", tmp_path / "site-packages" / "hsd")
    monkeypatch.delenv("HSD_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_a_checkout_caches_in_its_own_dot_cache(monkeypatch):
    monkeypatch.delenv("HSD_CACHE_DIR", raising=False)
    assert paths.checkout_root() == REPO
    assert paths.cache_root() == REPO / ".cache"


@pytest.mark.parametrize("xdg, expected", [
    (None, "home/.cache/hsd"),
    ("{tmp}/xdg", "xdg/hsd"),
    ("relative/xdg", "home/.cache/hsd"),  # the XDG rule: a relative value is ignored
])
def test_an_installed_hsd_caches_in_the_user_cache_dir(installed, monkeypatch, xdg, expected):
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg.format(tmp=installed))
    assert paths.checkout_root() is None
    assert paths.cache_root() == installed / expected


def test_hsd_cache_dir_wins_everywhere(installed, monkeypatch):
    monkeypatch.setenv("HSD_CACHE_DIR", str(installed / "mine"))
    assert paths.cache_root() == installed / "mine"


def test_package_data_is_inside_the_package():
    assert paths.package_data("ds_configs", "zero3.json").is_file()
    assert paths.package_data("configs", "demo.yaml").is_file()
    assert (REPO / "ds_configs").resolve() == paths.package_data("ds_configs")  # the checkout's link


def test_compile_caches_go_under_the_hsd_cache_unless_the_user_chose(monkeypatch, tmp_path):
    monkeypatch.setenv("HSD_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # recorded, so the value set below is undone after
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("TRITON_CACHE_DIR", "/mine/triton")
    assert paths.use_compile_cache() == tmp_path / "compile"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compile" / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == "/mine/triton"  # the user's choice is kept
    from torch._inductor.runtime.cache_dir_utils import cache_dir  # torch reads it where it compiles

    assert cache_dir() == str(tmp_path / "compile" / "inductor")


def test_torchs_own_default_does_not_count_as_the_users_choice(monkeypatch, tmp_path):
    importlib.import_module("torch._inductor.config")  # importing it writes the default into the environment
    from torch._inductor.runtime.cache_dir_utils import cache_dir, default_cache_dir

    monkeypatch.setenv("HSD_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    paths.use_compile_cache()
    assert cache_dir() == str(tmp_path / "compile" / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # a real choice is kept
    paths.use_compile_cache()
    assert cache_dir() == str(tmp_path / "mine")


def _cli(tmp_path, **env):
    """``hsd validate`` of a missing config: one error line, after the command's modules were imported."""
    full = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    full.update(HSD_CACHE_DIR=str(tmp_path / "cache"), **env)
    out = subprocess.run([sys.executable, "-m", "hsd.cli", "validate", "--config", str(tmp_path / "missing.yaml")],
                         cwd=REPO, env=full, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "missing.yaml" in out.stderr, out.stderr
    return sorted((tmp_path / "cache" / "pycache").rglob("*.pyc"))


def test_bytecode_python_was_told_not_to_write_goes_under_the_hsd_cache(tmp_path):
    written = _cli(tmp_path, PYTHONDONTWRITEBYTECODE="1")
    mirrored = {p.relative_to(tmp_path / "cache" / "pycache").as_posix() for p in written}
    for module in ("hsd/commands/validate", "hsd/recipes/validate"):  # imported by the command, after main() began
        assert any(m.startswith(str(REPO).lstrip("/") + "/" + module + ".cpython-") for m in mirrored), mirrored


@pytest.mark.parametrize("env", [{}, {"PYTHONDONTWRITEBYTECODE": "1", "HSD_BYTECODE_CACHE": "0"}])
def test_bytecode_settings_are_left_alone_otherwise(tmp_path, env):
    assert _cli(tmp_path, **env) == []


def test_choosing_the_compile_cache_does_not_import_the_compiler(tmp_path):
    """A validation job never compiles (``model.compile_*`` auto): importing torch._inductor only to
    read its default cache path pulled in torch._dynamo, 1-2 s of every job's start-up."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    code = ("import sys, os, torch; from hsd import paths; paths.use_compile_cache(); "
            "print(os.environ['TORCHINDUCTOR_CACHE_DIR']); "
            "print(sorted(m for m in ('torch._inductor', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "HSD_CACHE_DIR": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == [str(tmp_path / "compile" / "inductor"), "[]"]
