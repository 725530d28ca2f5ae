"""Inference backends, named lazily as ``"module:Class"`` so importing hsd imports no engine.

``get_backend("hf")`` returns the class; an unknown name raises :class:`HsdError` listing the
valid ones (a typo in ``inference.backend`` should cost seconds, not a queued GPU job).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hsd.errors import HsdError

if TYPE_CHECKING:
    from hsd.inference.base import Backend

# name -> "module:Class"; add a backend by adding a line here.
BACKENDS: dict[str, str] = {
    "hf": "hsd.inference.hf:HFBackend",
    "deepspeed": "hsd.inference.deepspeed_backend:DeepSpeedBackend",
    "tp": "hsd.inference.tp_backend:TPBackend",
}


def get_backend(name: str) -> "type[Backend]":
    """The backend class registered under ``name``."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise HsdError(
            f"unknown inference backend '{name}'. Valid names: {', '.join(sorted(BACKENDS))} "
            "(config key inference.backend)"
        ) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)
