"""Model loading (real, tiny, with or without a LoRA adapter). Importing this imports no torch."""

from __future__ import annotations

from typing import Any

__all__ = ["load_model_and_tokenizer"]


def load_model_and_tokenizer(model_cfg: Any, device: str | None = None) -> tuple[Any, Any]:
    """See :func:`hsd.models.loader.load_model_and_tokenizer` (imported lazily: torch is heavy)."""
    from hsd.models.loader import load_model_and_tokenizer as _load

    return _load(model_cfg, device)
