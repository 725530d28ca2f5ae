"""Where hsd finds its own files and where it caches, the same from a checkout and from a wheel.

What the package reads at run time (DeepSpeed JSONs, prompt templates, the chat template, the
demo's config) is package data beside the code, so :data:`PACKAGE` finds it in both. Only the
cache root differs (:func:`cache_root`): a checkout keeps its caches in its own ``.cache/`` (the
tests and ``make demo`` share the tiny model and the tokenizer there); an installed hsd must not
write next to its code, so it uses the user's cache directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

PACKAGE = Path(__file__).resolve().parent
CACHE_ENV = "HSD_CACHE_DIR"  # a location, like HF_HOME: moves every cache hsd writes


def checkout_root() -> Optional[Path]:
    """The source checkout this package is imported from (a ``pyproject.toml`` and a ``.git``
    beside the package), else None (an installed wheel: site-packages has neither)."""
    root = PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() and (root / ".git").exists() else None


def cache_root() -> Path:
    """``$HSD_CACHE_DIR``; else the checkout's ``.cache/``; else ``$XDG_CACHE_HOME/hsd`` or
    ``~/.cache/hsd`` (the XDG base directory rule: a relative XDG_CACHE_HOME is ignored)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    root = checkout_root()
    if root is not None:
        return root / ".cache"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache") / "hsd"


def package_data(*parts: str) -> Path:
    """A file or folder shipped inside the package, e.g. ``package_data("ds_configs")``."""
    return PACKAGE.joinpath(*parts)


COMPILE_CACHE_ENVS = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


def use_compile_cache() -> Path:
    """Point torch.compile's and Triton's on-disk caches into ``cache_root()/compile`` unless the
    user chose other places. Why: their defaults are ``/tmp`` per node, which a cluster wipes or
    does not share, so every job on a fresh node compiled again — measured on one H100, the first
    ``hsd validate`` of the test split took 74.2 s, the next one 48.2 s (BENCHMARKS.md).
    torch writes its default into ``TORCHINDUCTOR_CACHE_DIR`` as soon as ``torch._inductor`` is
    imported (here, or in a parent process), so a value equal to that default counts as not chosen;
    torch reads the variable again at each compile, so setting it here, before the model compiles,
    takes effect. ``torch._inductor`` is imported only to compare a value already set: importing
    it pulls in torch._dynamo (1.1-2 s of CPU), which a job that never compiles does not need."""
    root = cache_root() / "compile"
    inductor = os.environ.get(COMPILE_CACHE_ENVS[0])
    if inductor is None or _is_inductor_default(inductor):
        os.environ[COMPILE_CACHE_ENVS[0]] = str(root / "inductor")
    os.environ.setdefault(COMPILE_CACHE_ENVS[1], str(root / "triton"))
    return root


def _is_inductor_default(path: str) -> bool:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return os.path.abspath(path) == os.path.abspath(default_cache_dir())


BYTECODE_ENV = "HSD_BYTECODE_CACHE"  # 0: leave Python's bytecode settings as they are


def use_bytecode_cache() -> Optional[Path]:
    """Where Python is told not to write bytecode (``PYTHONDONTWRITEBYTECODE``, which many
    container images set), keep it under ``cache_root()/pycache`` instead, so only the first job
    compiles torch's and transformers' sources. Why: on the lent H100 machines (an image with
    PYTHONDONTWRITEBYTECODE=1) compiling sources was 8.8 s of every ``hsd validate``
    (``builtins.compile`` under cProfile, BENCHMARKS.md). Nothing is written next to the
    sources; a prefix the user chose (``PYTHONPYCACHEPREFIX``) or ``HSD_BYTECODE_CACHE=0`` leaves
    Python as configured. Call it before the heavy imports; returns the directory, or None."""
    if not sys.flags.dont_write_bytecode or sys.pycache_prefix or os.environ.get(BYTECODE_ENV) == "0":
        return None
    root = cache_root() / "pycache"
    sys.pycache_prefix = str(root)  # importlib reads both at every import from now on
    sys.dont_write_bytecode = False
    return root
