"""Validation as a job: ``hsd submit baseline --config F`` (also a stage of the pipeline/sweep).

Resume needs nothing here: ``hsd.recipes.validate.run`` appends every batch to
``<run_dir>/shards/rank<k>.jsonl`` and skips recorded sample ids, so the fresh instance that
``checkpoint()`` resubmits after a preemption continues where the shards stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.base import HsdJob


class ValidateJob(HsdJob):
    """``ValidateJob(config, run_dir=...)``: one validation run (all ranks of it)."""

    stage_kind = "validate"

    def run(self, cfg: Any, run_dir: str) -> Path:
        from hsd.recipes.validate import run

        return run(cfg, Path(run_dir))
