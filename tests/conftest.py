"""Shared fixtures. The tiny model is built once per version and reused across sessions."""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A suite started in the background by a script (`cmd &` without job control, as some CI runners
# do) inherits SIGINT as ignored, and so would every `hsd` process the fault tests start: their
# simulated Ctrl-C would do nothing (hsd rightly keeps an ignored SIGINT ignored). A handler here
# makes the children start with the default disposition, as under a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A tiny GptOss model + harmony tokenizer, cached under .cache/tests keyed by TINY_VERSION.

    Several pytest sessions may start at once (CI, other developers): a file lock makes one
    build while the others wait, and build_tiny renames a finished directory into place.
    """
    return _cached_tiny("safetensors")


@pytest.fixture(scope="session")
def tiny_mxfp4_dir() -> Path:
    """The same tiny model (same seed, same weights) written as gpt-oss's release is: MXFP4
    experts, bf16 elsewhere (``hsd model tiny --format mxfp4``)."""
    return _cached_tiny("mxfp4")


def _cached_tiny(fmt: str) -> Path:
    from hsd.models.tiny import TINY_VERSION, build_tiny

    cache = REPO / ".cache" / "tests"
    cache.mkdir(parents=True, exist_ok=True)
    suffix = "" if fmt == "safetensors" else f"-{fmt}"
    path = cache / f"tiny-model-v{TINY_VERSION}-seed0{suffix}"
    with open(cache / f".tiny-model-v{TINY_VERSION}{suffix}.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not (path / "hsd_tiny.json").exists():
            build_tiny(path, seed=0, fmt=fmt)
    return path


@pytest.fixture(scope="session")
def tiny_architecture():
    """A factory: the tiny model's architecture (hsd.models.tiny) in memory, fresh seeded weights,
    eager attention and the given experts implementation — for gradient comparisons."""
    import torch
    from transformers import GptOssForCausalLM

    from hsd.models.fullsize import harmony_tokenizer
    from hsd.models.tiny import build_config

    config = build_config(harmony_tokenizer())

    def make(experts_implementation: str = "eager"):
        torch.manual_seed(0)
        return GptOssForCausalLM._from_config(config, attn_implementation="eager",
                                              experts_implementation=experts_implementation)

    return make
