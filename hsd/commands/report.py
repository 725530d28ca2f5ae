"""``hsd report RUN_OR_EXPERIMENT_DIR...`` (reports from records) and ``hsd report index [RESULTS_DIR]``.

``index`` writes one page listing every experiment and run under the results directory
(:mod:`hsd.reporting.index_html`) and prints its path; any other arguments are run or
experiment directories whose reports are regenerated (:func:`hsd.commands.collate.report_main`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hsd.errors import HsdError


def main(args: Any) -> int:
    if args.paths[0] != "index":  # a directory named index: pass ./index
        from hsd.commands.collate import report_main

        if args.out:
            raise HsdError("--out is for `hsd report index` only; the reports of a run go into the run directory")
        return report_main(args)
    return index(args.paths[1:], args.out)


def index(paths: list[str], out: str | None) -> int:
    from hsd.reporting.index_html import write_index

    if len(paths) > 1:
        raise HsdError(f"hsd report index takes one results directory, got {len(paths)}: {' '.join(paths)}")
    results = Path(paths[0] if paths else "results")
    if not results.is_dir():
        raise HsdError(f"{results} is not a directory: pass the results directory (hsd report index results)")
    print(write_index(results, Path(out) if out else None), flush=True)
    return 0
