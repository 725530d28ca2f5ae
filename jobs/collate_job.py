"""Collation as a job: the last stage of ``hsd submit baseline|pipeline|sweep``.

It runs once the validations have ended, whatever their outcome (``afterany`` on Slurm). From
``jobs.json`` and the scheduler (``hsd status``'s view) it learns which validations completed:
those runs are collated (merging shards rank 0 did not merge, metrics, references,
``report.md``/``report.html``) and compared in ``<experiment>/comparison/``, and every stage
that did not complete is listed there with its state and error line. CPU only, one task;
rerunning it rewrites the same reports, so a requeue needs no state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.base import HsdJob


def outcomes(exp: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """(run directories of the validations that completed, entries of the stages that did not,
    each with its error line or why it never ran), the collate stage itself left out."""
    from hsd.runs import Status
    from jobs.book import run_path
    from jobs.status import collect

    book, rows = collect(exp)
    finished, unfinished = [], []
    for entry, (_, _, state, detail) in zip(book["jobs"], rows):
        if entry["kind"] == "collate":
            continue
        if state == Status.COMPLETED:
            if entry["kind"] == "validate":
                finished.append(run_path(exp, entry))
        else:
            unfinished.append({**entry, "state": state, "error": detail})
    return finished, unfinished


class CollateJob(HsdJob):
    """``CollateJob(config, exp_dir=...)``: returns the comparison report's path."""

    stage_kind = "collate"

    def run(self, cfg: Any, exp_dir: str) -> Path:
        from hsd.recipes.collate import collate_experiment

        finished, unfinished = outcomes(Path(exp_dir))
        return collate_experiment(Path(exp_dir), finished, unfinished, cfg.data.dir)
