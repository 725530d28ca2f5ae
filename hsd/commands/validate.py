"""``hsd validate --config F [--run-dir D] [overrides]``: one resumable validation run.

The run is :func:`hsd.recipes.validate.run`; this prints its metrics table, then its directory as
the last line of stdout (rank 0 only, so a multi-rank launch prints them once).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hsd.config import load_config
from hsd.distributed import launcher_rank


def main(args: Any) -> int:
    from hsd.recipes.validate import run

    cfg = load_config(args.config, args.overrides)
    path = run(cfg, Path(args.run_dir) if args.run_dir else None)
    if launcher_rank() == 0:
        print(_table(path), flush=True)
        print(path, flush=True)
    return 0


def _table(path: Path) -> str:
    """The run's headline metrics table (from its ``metrics.json``, as the reports)."""
    from hsd.reporting.tracked import metrics_table

    metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    return "\n".join(metrics_table(s, m["performance"]) for s, m in metrics["strategies"].items())
