"""``hsd model tiny --out DIR`` and ``hsd model tokenizer``: the models tests and the demo use.

``tiny`` builds a small ``GptOssForCausalLM`` with gpt-oss's real tokenizer
(:mod:`hsd.models.tiny`); ``tokenizer`` rebuilds o200k_harmony offline into the cache
(:mod:`hsd.models.o200k`). Each prints the directory it wrote or found.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hsd.errors import ModelError


def tiny(args: Any) -> int:
    """``hsd model tiny --out DIR [--seed N] [--format safetensors|mxfp4] [--force]``."""
    from hsd.models.tiny import build_tiny

    out = Path(args.out)
    if out.exists() and args.force:
        if not (out / "hsd_tiny.json").exists() and any(out.iterdir()):
            raise ModelError(f"--force refuses to delete {out}: it is not a tiny model built by hsd")
        shutil.rmtree(out)
    print(build_tiny(out, seed=args.seed, fmt=args.format))
    return 0


def tokenizer(args: Any) -> int:
    """``hsd model tokenizer [--cache-dir DIR]``: build (or check) the cache."""
    from hsd.models.o200k import ensure_built

    print(ensure_built(Path(args.cache_dir) if args.cache_dir else None))
    return 0


def main(args: Any) -> int:
    return {"tiny": tiny, "tokenizer": tokenizer}[args.model_command](args)
