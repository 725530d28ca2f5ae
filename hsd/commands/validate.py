"""``hsd validate --config F [--run-dir D] [overrides]``: one resumable validation run.

The run is :func:`hsd.recipes.validate.run`; this prints its metrics table, then its directory as
the last line of stdout (rank 0 only, so a multi-rank launch prints them once). A baseline run (no
``model.adapter``) whose records this call wrote is first collated on its own
(:func:`hsd.recipes.collate.collate_run`): its reports and ``BASELINE_METRICS.txt`` exist before
any fine-tuning, as the old guide wrote them after its baseline. Done after the run released its
lock; a failure there is one warning line, never a failed run. On a GPU most of that collation is
done while the model generates, by a second process (:mod:`hsd.recipes.collate_ahead`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from hsd.config import Config, load_config
from hsd.distributed import launcher_rank
from hsd.errors import HsdError

if TYPE_CHECKING:
    from hsd.recipes.collate_ahead import CollateAhead


def main(args: Any) -> int:
    from hsd.recipes.collate_ahead import CollateAhead
    from hsd.recipes.validate import run

    cfg = load_config(args.config, args.overrides)
    ahead = CollateAhead.start(cfg) if launcher_rank() == 0 and not cfg.model.adapter else None
    try:
        path = run(cfg, Path(args.run_dir) if args.run_dir else None)
    except BaseException:
        if ahead is not None:
            ahead.cancel()
        raise
    if launcher_rank() == 0:
        baseline_metrics(cfg, path, ahead)
        print(_table(path), flush=True)
        print(path, flush=True)
    return 0


def baseline_metrics(cfg: Config, path: Path, ahead: Optional[CollateAhead] = None) -> None:
    """Collate a baseline run whose merged records are newer than its ``BASELINE_METRICS.txt``
    (a completed run started again with nothing to do is left byte-identical) — by ``ahead``'s
    process when there is one (:mod:`hsd.recipes.collate_ahead`), else here."""
    from hsd.reporting.rundata import merged_file

    merged = merged_file(path)
    summary = path / "BASELINE_METRICS.txt"
    if cfg.model.adapter or merged is None or (
            summary.exists() and summary.stat().st_mtime_ns >= merged.stat().st_mtime_ns):
        if ahead is not None:
            ahead.cancel()
        return
    try:
        if ahead is None or not ahead.collate(path):
            from hsd.recipes.collate import collate_run  # the report stack (~0.7 s of imports): only when collated here

            collate_run(path, cfg.data.dir, merge=False)
    except (HsdError, OSError) as exc:
        print(f"warning: {path}: the run is complete, but BASELINE_METRICS.txt and its reports were not "
              f"written ({exc}); write them with: hsd collate {path}", file=sys.stderr, flush=True)


def _table(path: Path) -> str:
    """The run's headline metrics table (from its ``metrics.json``, as the reports)."""
    from hsd.reporting.tracked import metrics_table

    metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    return "\n".join(metrics_table(s, m["performance"]) for s, m in metrics["strategies"].items())
