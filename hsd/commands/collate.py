"""``hsd collate PATH...`` and ``hsd report PATH...``: metrics, references and reports of runs.

``collate`` merges shards a run did not merge, then writes every report (and the comparison
of an experiment); ``report`` rebuilds the reports from the records alone. Both are
:func:`hsd.recipes.collate.run`; each report path is printed, the experiment's (or run's) last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _print(reports: list[Path]) -> None:
    for path in reports:
        print(path, flush=True)


def main(args: Any) -> int:
    from hsd.recipes.collate import run

    _print(run(args.paths, args.data_dir, merge=True))
    return 0


def report_main(args: Any) -> int:
    from hsd.recipes.collate import run

    _print(run(args.paths, args.data_dir, merge=False))
    return 0
