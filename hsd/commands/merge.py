"""``hsd merge --adapter DIR --out DIR [--base MODEL] [--dtype D]``: a LoRA adapter merged into its base.

The merge itself is :func:`hsd.training.merge.merge`; this prints the merged model directory.
"""

from __future__ import annotations

from typing import Any

from hsd.training.merge import merge


def main(args: Any) -> int:
    print(merge(args.adapter, args.out, args.base, args.dtype))
    return 0
