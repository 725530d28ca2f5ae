"""``hsd submit {baseline,pipeline,sweep} --config F`` and ``hsd submit resume EXPERIMENT``.

Submits (Slurm) or runs (local executor) the plan; on the local executor, where the command
returns only when everything has run, it ends with the comparison's short table in the
terminal — each run's answered rate, F1, MCC, the TF-IDF reference, the success-criterion
verdict and the report's path — also when some stage failed. The last line printed is the
experiment directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hsd.config import load_config


def print_summary(exp: Path) -> None:
    """The comparison's terminal table, when collate wrote one."""
    from hsd.reporting.comparison_report import terminal_table

    path = exp / "comparison" / "comparison.json"
    if path.is_file():
        print(terminal_table(json.loads(path.read_text()), exp / "comparison" / "report.html"), flush=True)


def main(args: Any) -> int:
    from jobs.book import load_book
    from jobs.pipeline import StagesFailed, submit_command
    from jobs.resume import resume_experiment

    try:
        if args.submit_command == "resume":
            exp = resume_experiment(args.experiment, args.overrides, args.results_dir)
        else:
            exp = submit_command(args.submit_command, load_config(args.config, args.overrides))
    except StagesFailed as exc:
        print_summary(exc.exp)
        raise
    if load_book(exp)["executor"] != "slurm":
        print_summary(exp)
    print(exp)
    return 0
