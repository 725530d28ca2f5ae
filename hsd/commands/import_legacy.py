"""``hsd import-legacy OLD_RUN --out DIR [--keep-predictions]``: an old pipeline run as an hsd run.

The import (re-parse every raw response, write the seed files and a manifest) is
:func:`hsd.recipes.import_legacy.import_run`; this prints per strategy its F1 and unknowns next
to the old pipeline's own predictions, then the new run directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional


def main(args: Any) -> int:
    from hsd.recipes.import_legacy import import_run

    command = "hsd import-legacy " + " ".join(
        [args.old_run_dir, "--out", args.out] + (["--keep-predictions"] if args.keep_predictions else []))
    out = import_run(Path(args.old_run_dir), Path(args.out), args.keep_predictions, command)
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    old = manifest["old_pipeline_predictions"]
    if manifest["n_unreadable_rows"]:
        print(f"warning: {manifest['n_unreadable_rows']} rows of the old jsonl could not be read as they are "
              "(listed under unreadable_rows in manifest.json)", file=sys.stderr)
    for strategy, m in summary["strategies"].items():
        perf = m["performance"]
        line = (f"{strategy}: {perf['n_samples']} samples, F1 {_fmt(perf['answered']['f1_score'])}, "
                f"unknown {perf['unknown_count']} ({_fmt(perf['unknown_rate'])})")
        if strategy in old:
            line += f"; the old pipeline's predictions on these responses: F1 {_fmt(old[strategy]['f1_score'])}"
        print(line)
    print(out)
    return 0


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.4f}"
