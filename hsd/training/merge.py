"""Merge a LoRA adapter into its base model: ``hsd merge --adapter DIR --out DIR [--base MODEL]``.

A merged model serves without peft and at the base model's speed (no extra LoRA matmuls).
The base comes from the adapter's ``base_model_name_or_path`` unless ``--base`` says
otherwise; the result (safetensors + tokenizer) is written to a temp directory and renamed,
and an existing ``--out`` is never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from hsd.config import ModelConfig
from hsd.errors import ModelError
from hsd.runs import RunError, publish_dir


def base_of(adapter: Path) -> str:
    """The base model the adapter was trained on, as recorded by peft."""
    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise ModelError(f"LoRA adapter not found: {adapter} has no adapter_config.json (expected <train run>/adapter)")
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{config} records no base_model_name_or_path; pass --base MODEL")
    return base


def merge(adapter: str | Path, out: str | Path, base: Optional[str] = None, dtype: str = "auto") -> Path:
    """Load base + adapter on CPU, ``merge_and_unload``, save; returns ``out``."""
    from hsd.models.loader import load_model_and_tokenizer

    adapter, out = Path(adapter).resolve(), Path(out).resolve()
    if out.exists():
        raise RunError(f"{out} already exists; hsd merge never overwrites: choose a new --out")
    base = base or base_of(adapter)
    # fp32 on CPU unless asked: merging in bf16 rounds W + BA once more than serving the adapter does.
    cfg = ModelConfig(name_or_path=base, adapter=str(adapter), device="cpu",
                      dtype="float32" if dtype == "auto" else dtype)
    model, tokenizer = load_model_and_tokenizer(cfg)
    merged = model.merge_and_unload()
    with publish_dir(out) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        meta = {"base": base, "adapter": str(adapter), "dtype": cfg.dtype}
        (tmp / "hsd_merge.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
