"""LoRA training as a job: a stage of ``hsd submit pipeline`` / ``hsd submit sweep``.

Preemption: while a step runs, ``hsd.training.checkpoint.PreemptionGuard`` holds SIGUSR2 back;
at the next step boundary every rank saves the checkpoint, then the guard hands the signal to
submitit's handler, which calls :meth:`checkpoint` (a fresh instance on the same run directory)
and requeues the job. The new job resumes from the newest complete checkpoint, so the step
counter carries on instead of restarting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.base import HsdJob


class TrainJob(HsdJob):
    """``TrainJob(config, run_dir=..., data_dir=<ftdata dir>)``: adapter at ``run_dir/adapter``."""

    stage_kind = "train"

    def run(self, cfg: Any, run_dir: str, data_dir: str) -> Path:
        from hsd.recipes.train import run

        return run(cfg, Path(run_dir), Path(data_dir))
