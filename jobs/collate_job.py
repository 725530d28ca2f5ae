"""Collation as a job: the last stage of ``hsd submit baseline|pipeline|sweep``.

Collates every validation run of the experiment directory (merging shards rank 0 did not merge,
metrics, references, ``report.md``/``report.html``) and, when there are several runs, writes
the comparison to ``<experiment>/comparison/``. CPU only, one task; rerunning it rewrites the
same reports, so a requeue needs no state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.base import HsdJob


class CollateJob(HsdJob):
    """``CollateJob(config, exp_dir=...)``: returns the last report written (the comparison's)."""

    stage_kind = "collate"

    def run(self, cfg: Any, exp_dir: str) -> Path:
        from hsd.collate import run

        reports = run([Path(exp_dir)], cfg.data.dir)
        return reports[-1]
