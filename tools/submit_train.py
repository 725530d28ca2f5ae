"""``hsd train`` as one job under submitit's local executor, as ``hsd submit pipeline`` runs it:

    python tools/submit_train.py GPUS RUN_DIR FTDATA CONFIG [overrides...]

For tools/bench_train_multi.sh: N tasks (one per GPU) each set up torch.distributed from
submitit's environment. Prints the run directory; exits 1 with the job's error line if it failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hsd.config import load_config, to_dict
from jobs.executor import error_summary, make_executor
from jobs.train_job import TrainJob


def main(argv: list[str]) -> int:
    gpus, run_dir, data, config, *overrides = argv
    cfg = load_config(config, [*overrides, "executor.kind=local", f"executor.gpus_per_node={gpus}",
                               "executor.timeout_min=60"])
    run = Path(run_dir).resolve()
    executor = make_executor(cfg.executor, run.parent / f"{run.name}_submitit", "train")
    job = executor.submit(TrainJob(to_dict(cfg), run_dir=str(run), data_dir=str(Path(data).resolve())))
    print(f"job {job.job_id}: logs {job.paths.folder}", flush=True)
    try:
        job.results()  # one result per task
    except Exception as exc:  # noqa: BLE001 - reported as one line; the logs hold the rest
        print(f"FAILED {error_summary(exc)}", flush=True)
        return 1
    print(run, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
