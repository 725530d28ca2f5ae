"""``hsd submit {baseline,pipeline,sweep} --config F`` and ``hsd submit resume EXPERIMENT``.

Submits (Slurm) or runs (local executor) the plan; on the local executor, where the command
returns only when everything has run, it ends with the comparison's short table in the
terminal — each run's answered rate, F1, MCC, the TF-IDF reference, the success-criterion
verdict and the report's path — also when some stage failed. The last line printed is the
experiment directory.

Ctrl-C, SIGTERM or SIGHUP stop the running job and record it and every stage not started as
CANCELLED (:mod:`jobs.interrupt`); the command prints one ``interrupted: ...`` line naming the
resume command and exits 128 + the signal's number (130, 143, 129).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hsd.config import load_config


def print_summary(exp: Path) -> None:
    """The comparison's terminal table, when collate wrote one."""
    from hsd.reporting.comparison_report import terminal_table

    path = exp / "comparison" / "comparison.json"
    if path.is_file():
        print(terminal_table(json.loads(path.read_text(encoding="utf-8")), exp / "comparison" / "report.html"), flush=True)


def main(args: Any) -> int:
    from jobs.book import load_book
    from jobs.interrupt import Interrupted, StopSignals
    from jobs.pipeline import StagesFailed, submit_command
    from jobs.resume import resume_experiment

    try:
        with StopSignals():  # also while the plan is made: nothing started yet, nothing to stop
            if args.submit_command == "resume":
                exp = resume_experiment(args.experiment, args.overrides, args.results_dir)
            else:
                exp = submit_command(args.submit_command, load_config(args.config, args.overrides))
    except StagesFailed as exc:
        print_summary(exc.exp)
        raise
    except Interrupted as exc:
        print(exc.message, file=sys.stderr, flush=True)
        return exc.exit_code
    if load_book(exp)["executor"] != "slurm":
        print_summary(exp)
    print(exp)
    return 0
