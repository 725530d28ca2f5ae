"""``hsd validate --config F [--run-dir D] [overrides]``: one resumable validation run.

The run is :func:`hsd.recipes.validate.run`; this prints its directory as the last line of
stdout (rank 0 only, so a multi-rank launch prints it once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hsd.config import load_config
from hsd.distributed import launcher_rank


def main(args: Any) -> int:
    from hsd.recipes.validate import run

    cfg = load_config(args.config, args.overrides)
    path = run(cfg, Path(args.run_dir) if args.run_dir else None)
    if launcher_rank() == 0:
        print(path, flush=True)
    return 0
