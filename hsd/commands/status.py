"""``hsd status [EXPERIMENT_DIR] [--watch [--interval S]]``: where each job of a submitted experiment stands.

The states come from :func:`jobs.status.collect` (the scheduler for Slurm, ``jobs.json`` for
the local executor); this prints them as a table with each entry's attempts. ``--watch``
prints the table again every ``--interval`` seconds until every job has ended (completed,
failed, cancelled, ...), which is how a person follows a chain of jobs without re-typing the
command; Ctrl-C stops watching (the jobs go on).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

from hsd.runs import Status


def show(exp: Path) -> bool:
    """Print the experiment's table; True when every job has ended."""
    from jobs.status import attempts, collect

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
    sys.stdout.flush()
    return all(ended(state) for _, _, state, _ in rows)


def ended(state: str) -> bool:
    """A job that will not go on by itself (a PREEMPTED one is requeued: it goes on)."""
    status = Status.parse(state)
    return status.finished and status is not Status.PREEMPTED


def watch(exp: Path, interval_s: float, sleep: Callable[[float], None] = time.sleep) -> int:
    """Print the table every ``interval_s`` seconds until every job has ended; Ctrl-C stops watching."""
    try:
        while not show(exp):
            sleep(interval_s)
            print(f"\n--- {time.strftime('%H:%M:%S')} (every {interval_s:g} s; Ctrl-C stops watching, not the jobs)")
    except KeyboardInterrupt:
        print("\nstopped watching; the jobs go on (hsd status shows them, hsd cancel stops them)", flush=True)
        return 0
    print("every job has ended", flush=True)
    return 0


def main(args: Any, sleep: Callable[[float], None] = time.sleep) -> int:
    from hsd.errors import HsdError
    from jobs.status import newest_experiment

    exp = Path(args.experiment_dir) if args.experiment_dir else newest_experiment(Path(args.results_dir))
    exp = exp.resolve()
    if not args.watch:
        show(exp)
        return 0
    if args.interval <= 0:
        raise HsdError(f"--interval must be > 0 seconds, got {args.interval}")
    return watch(exp, args.interval, sleep)
