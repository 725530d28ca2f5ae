"""``hsd train --config F [--data DIR] [--run-dir D] [overrides]``: LoRA fine-tuning, resumable.

Launch with ``torchrun --nproc_per_node N -m hsd.cli train ...`` (or under ``hsd submit``) for
several ranks. The training is :func:`hsd.recipes.train.run`; this prints the run directory as
the last line (rank 0).
"""

from __future__ import annotations

from typing import Any

from hsd.config import load_config
from hsd.distributed import launcher_rank


def main(args: Any) -> int:
    from hsd.recipes.train import run

    cfg = load_config(args.config, args.overrides)
    path = run(cfg, args.run_dir, args.data)
    if launcher_rank() == 0:
        print(path, flush=True)
    return 0
