"""1-node vs 2-node wall time of the Slurm tests' tiny CPU jobs, on the project's test Slurm:

    bash tests/slurm/slurm.sh up
    PYTHONPATH=$PWD .venv/bin/python tools/bench_multinode.py MODEL_DIR OUT_DIR

MODEL_DIR is the tests' tiny model (``.cache/tests/tiny-*``, built by the test session). The
validation (6 samples, as tests/integration/test_slurm_multinode.py) and the LoRA training (10
steps) each run alone, one after the other, in three layouts: one task on one node, two tasks on
one node, one task on each of two nodes. Prints a Markdown table: the wall time from sbatch to the
job's end as submitit sees it, Slurm's elapsed time of the job, and for the training the time of
its 10 steps alone (``train_time_s`` of the last step in ``train_log.jsonl``: without start-up).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

LAYOUTS = {"1 node x 1 task": ("executor.nodes=1", "executor.tasks_per_node=1"),
           "1 node x 2 tasks": ("executor.nodes=1", "executor.tasks_per_node=2"),
           "2 nodes x 1 task": ("executor.nodes=2", "executor.tasks_per_node=1")}


def elapsed(job_id: str) -> str:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "Elapsed", "-j", job_id], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[-1] if out else "?"


def main(model: Path, out: Path) -> None:
    from _slurm_helpers import tiny_config
    from hsd.config import to_dict
    from hsd.training.ftdata import run as ftdata
    from jobs.executor import make_executor
    from jobs.train_job import TrainJob
    from jobs.validate_job import ValidateJob

    rows = []
    data = None
    for layout, keys in LAYOUTS.items():
        tag = layout.replace(" ", "")
        for kind in ("validate", "train"):
            name = f"{kind}-{tag}"
            cfg = tiny_config(out, model, name, *keys, "train.max_steps=10", "train.save_every=1000",
                              "train.eval_every=1000")
            data = data or ftdata(cfg, out / "ftdata")
            job_obj = (ValidateJob(to_dict(cfg), run_dir=str(out / name / "run")) if kind == "validate"
                       else TrainJob(to_dict(cfg), run_dir=str(out / name / "run"), data_dir=str(data)))
            t0 = time.monotonic()
            job = make_executor(cfg.executor, out / name, name).submit(job_obj)
            job.results()
            rows.append((kind, layout, time.monotonic() - t0, elapsed(job.job_id), steps_time(out / name / "run")))
            print(f"{kind:9} {layout:17} {rows[-1][2]:6.1f} s  (sacct {rows[-1][3]}, steps {rows[-1][4]})",
                  file=sys.stderr, flush=True)
    print("| job | layout | wall time, sbatch to result (s) | Slurm elapsed | training steps alone (s) |")
    print("|---|---|---|---|---|")
    for kind, layout, wall, slurm, steps in rows:
        print(f"| {kind} | {layout} | {wall:.1f} | {slurm} | {steps} |")


def steps_time(run: Path) -> str:
    log = run / "train_log.jsonl"
    if not log.exists():
        return "-"
    times = [json.loads(l).get("train_time_s") for l in log.read_text().splitlines() if l.strip()]
    times = [t for t in times if t is not None]
    return f"{times[-1]:.1f}" if times else "-"


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
