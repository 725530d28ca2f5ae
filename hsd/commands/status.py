"""``hsd status [EXPERIMENT_DIR]``: where each job of a submitted experiment stands.

The states come from :func:`jobs.status.collect` (the scheduler for Slurm, ``jobs.json`` for
the local executor); this prints them as a table with each entry's attempts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def main(args: Any) -> int:
    from jobs.status import attempts, collect, newest_experiment

    exp = Path(args.experiment_dir) if args.experiment_dir else newest_experiment(Path(args.results_dir))
    exp = exp.resolve()
    book, rows = collect(exp)
    print(f"experiment {exp}  ({book['command']}, {book['executor']} executor, "
          f"submitted {book.get('submitted', '?')})")
    width = max((len(r[0]) for r in rows), default=5) + 2
    print(f"{'STAGE':<{width}}{'JOB':<12}{'STATE':<12}{'ATTEMPT':<9}DETAIL")
    for entry, (stage, job_id, state, text) in zip(book["jobs"], rows):
        print(f"{stage:<{width}}{job_id:<12}{state:<12}{len(entry.get('attempts', [])) + 1:<9}{text}")
    retried = [f"{e['stage']} attempt {attempts(e)}" for e in book["jobs"] if e.get("attempts")]
    if retried:
        print("earlier attempts: " + "; ".join(retried))
    return 0
