"""``hsd compare RUN RUN... [--out DIR] [--data-dir DIR]``: runs over the same samples, side by side.

Paired-bootstrap deltas against the first run, the success criterion and the summaries are
:mod:`hsd.recipes.compare`'s; this checks the runs (two or more, distinct, same sample ids —
the commonest mistake, caught before anything slow) and prints the report's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def main(args: Any) -> int:
    from hsd.config import ReportConfig
    from hsd.recipes.compare import CompareError, check_same_samples, compare, default_out, write
    from hsd.reporting import refcache
    from hsd.reporting.rundata import load_run

    runs = [load_run(Path(p)) for p in args.runs]
    if len({r.path for r in runs}) != len(runs):
        raise CompareError("the same run is given twice")
    if len(runs) < 2:
        raise CompareError("compare needs at least two runs")
    check_same_samples(runs)
    out = Path(args.out) if args.out else default_out(runs)
    refs, provenance = refcache.references_for(runs[0], args.data_dir, use_cache=True)
    comp = compare(runs, refs, provenance, runs[0].cfg.report if runs[0].cfg else ReportConfig())
    print(write(comp, out, runs[0].cfg), flush=True)
    return 0
