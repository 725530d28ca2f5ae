"""``hsd ftdata --config F [--out DIR] [overrides]``: write the fine-tuning chat data.

The formats and the hold-out are :mod:`hsd.training.ftdata`'s; this command chooses the output
directory (``--out``, else ``results/<experiment>/<run_name or ftdata_<ts>>``), writes it and
prints the row counts, then the directory as the last line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hsd.config import load_config
from hsd.runs import new_run_dir, run_dir, timestamp
from hsd.training.ftdata import MANIFEST, run


def main(args: Any) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.out:
        out = Path(args.out)
    elif cfg.run_name:
        out = run_dir(cfg.results_dir, cfg.experiment, cfg.run_name)
    else:  # a fresh directory even for two runs started in the same second
        out = new_run_dir(cfg.results_dir, cfg.experiment, f"ftdata_{timestamp()}")
    path = run(cfg, out)
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    print(f"train rows {manifest['train_rows']}, hold-out rows {manifest['eval_rows']}, "
          f"evaluated rows excluded {manifest['excluded_evaluated_rows']}")
    print(path)
    return 0
