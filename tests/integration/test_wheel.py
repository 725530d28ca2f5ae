"""``pip install .`` (not editable) gives an hsd that works from any directory.

The wheel is built from this working tree, installed with ``--target`` and run with only that
folder on PYTHONPATH, from a working directory outside the checkout: the checkout is not
importable, so every file hsd reads must be in the wheel, and nothing may be looked up beside it
(an installed hsd caches under the user's cache directory).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from _run_helpers import write_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("hsd", "jobs")
NEEDED = ("hsd/ds_configs/zero3.json", "hsd/ds_configs/zero3_inference.json", "hsd/prompts/templates/rich.yaml",
          "hsd/models/harmony_chat_template.jinja", "hsd/configs/demo.yaml", "jobs/configs/pipeline_4xa100.yaml")
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
# What the installed hsd resolves, printed as JSON (run from outside the checkout).
PROBE = """
import json, os, sys
import hsd, jobs.pipeline
from hsd import paths
from hsd.commands.demo import CONFIG
from hsd.config import load_config
from hsd.models import o200k
from hsd.training.accel import load_ds_config, resolve_ds_config
model = sys.argv[1]
out = {"hsd": hsd.__file__, "jobs": jobs.pipeline.__file__, "checkout": str(paths.checkout_root()),
       "zero3": str(resolve_ds_config("zero3")), "inference": str(resolve_ds_config(load_config(None).inference.ds_config)),
       "demo": str(CONFIG), "tokenizer_cache_xdg": str(o200k.cache_dir())}
for name in ("auto", "zero3"):  # the config default, and a named one as `hsd train` loads it
    cfg = load_config(None, [f"model.name_or_path={model}", f"train.ds_config={name}"])
    out[f"ds_{name}"] = load_ds_config(cfg)[0]["zero_optimization"]["stage"]
del os.environ["XDG_CACHE_HOME"]
out["cache_home"] = str(paths.cache_root())
print(json.dumps(out))
"""


def _sources(dest: Path) -> Path:
    """This working tree's package sources, copied: the build writes build/ and *.egg-info beside
    them, which must not land in a checkout that other runs share."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    for name in PACKAGES:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    (tmp / "src").mkdir()
    src = _sources(tmp / "src")
    subprocess.run(PIP + ["wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist")],
                   check=True, capture_output=True, text=True, timeout=120)
    (built,) = (tmp / "dist").glob("hsd-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict[str, Path]:
    """The wheel installed into ``site``; ``home`` and ``cwd`` lie outside the checkout."""
    tmp = tmp_path_factory.mktemp("installed")
    site = tmp / "site"
    subprocess.run(PIP + ["install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=120)
    (tmp / "cwd").mkdir()
    return {"site": site, "home": tmp / "home", "cwd": tmp / "cwd"}


def _run(installed: dict[str, Path], *args: str) -> subprocess.CompletedProcess:
    """``args`` run in ``cwd`` with only the installed hsd importable; no HSD_* location set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HSD_") and k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(installed["site"]), HOME=str(installed["home"]),
               XDG_CACHE_HOME=str(installed["home"] / "xdg"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    res = subprocess.run(args, cwd=installed["cwd"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


def test_the_wheel_holds_every_file_of_the_packages(wheel):
    """Every module and every data file (DeepSpeed JSONs, templates, jinja, configs) of hsd/ and
    jobs/: a subpackage without __init__.py or a data folder missing from package-data is caught."""
    names = set(zipfile.ZipFile(wheel).namelist())
    tree = {p.relative_to(REPO).as_posix() for pkg in PACKAGES for p in (REPO / pkg).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}
    assert set(NEEDED) <= tree
    assert sorted(tree - names) == []


def test_the_installed_hsd_finds_its_files_from_another_directory(installed, tiny_model_dir):
    site, home = installed["site"], installed["home"]
    out = json.loads(_run(installed, sys.executable, "-c", PROBE, str(tiny_model_dir)).stdout.strip().splitlines()[-1])
    for key in ("hsd", "jobs", "zero3", "inference", "demo"):
        assert Path(out[key]).is_relative_to(site) and Path(out[key]).is_file(), (key, out[key])
    assert out["zero3"] == str(site / "hsd" / "ds_configs" / "zero3.json")
    assert out["ds_auto"] in (2, 3) and out["ds_zero3"] == 3
    assert out["checkout"] == "None"
    assert Path(out["tokenizer_cache_xdg"]).parent == home / "xdg" / "hsd"  # no HSD_CACHE_DIR, no checkout
    assert out["cache_home"] == str(home / ".cache" / "hsd")  # no XDG_CACHE_HOME either


def test_the_installed_hsd_help_and_validate_run_from_another_directory(installed, tiny_model_dir):
    res = _run(installed, str(installed["site"] / "bin" / "hsd"), "--help")  # the console script
    assert all(command in res.stdout for command in ("validate", "train", "submit"))
    cfg = write_config(installed["cwd"].parent, tiny_model_dir, synthetic=8, data={"max_samples": 4},
                       results_dir="results")  # relative: under the working directory
    res = _run(installed, sys.executable, "-m", "hsd.cli", "validate", "--config", str(cfg))
    run_dir = installed["cwd"] / res.stdout.strip().splitlines()[-1]  # printed relative or absolute
    assert run_dir.resolve().is_relative_to(installed["cwd"].resolve() / "results")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETED" and manifest["samples"] == 4
