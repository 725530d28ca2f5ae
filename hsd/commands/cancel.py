"""``hsd cancel EXPERIMENT``: stop an experiment's unfinished jobs and record them as CANCELLED.

Slurm: ``scancel``; the local executor: its ``hsd submit`` stops them, or, where that process is
gone, their process groups are stopped from here (:mod:`jobs.cancel`). ``hsd submit resume`` runs
them again later. A finished experiment: a message, exit 0, nothing changed.
"""

from __future__ import annotations

from typing import Any


def main(args: Any) -> int:
    from jobs.cancel import cancel_experiment
    from jobs.resume import find_experiment

    exp = find_experiment(args.experiment, args.results_dir, "hsd cancel")
    for line in cancel_experiment(exp):
        print(line, flush=True)
    return 0
