"""Fine-tuning data as a job: the first stage of ``hsd submit pipeline``/``sweep``.

Cheap and CPU-only (formats the train split into chat JSONL), so it runs as one task without
GPUs. Rerunning it on the same directory rewrites the same files, so a requeue needs no state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.base import HsdJob


class FtdataJob(HsdJob):
    """``FtdataJob(config, out_dir=...)``."""

    stage_kind = "ftdata"

    def run(self, cfg: Any, out_dir: str) -> Path:
        from hsd.training.ftdata import run

        return run(cfg, Path(out_dir))
