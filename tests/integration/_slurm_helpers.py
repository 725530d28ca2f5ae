"""Helpers of the real-Slurm tests: skip rule, a tiny config, sacct times, waiting with a reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import pytest

from hsd.config import Config, load_config

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}


def require_slurm() -> None:
    if shutil.which("sinfo") is None:
        pytest.skip("no Slurm here (sinfo not on PATH): run `make test-slurm` as root on Debian "
                    "(it installs Slurm and starts 2 nodes in network namespaces, which needs root)")
    if not os.environ.get("HSD_SLURM_UP"):
        pytest.skip("HSD_SLURM_UP is not set: start the project's 2-node Slurm with `make test-slurm` as root "
                    "(or `bash tests/slurm/slurm.sh up` and export HSD_SLURM_UP=1); `make test` does so only as root")
    if not (SHARED_DATA / "canned" / "canned_50_quick.json").is_file():
        pytest.skip(f"prepared data not found at {SHARED_DATA}")


def tiny_config(results: Path, model_dir: Path, experiment: str, *overrides: str) -> Config:
    """A Slurm experiment on the tiny model small enough for 2 CPU cores."""
    return load_config(None, [
        f"experiment={experiment}", f"results_dir={results}", f"model.name_or_path={model_dir}",
        f"data.dir={SHARED_DATA}", "data.subset=canned_50_quick", "data.max_samples=6",
        "prompt.template=simple", "pipeline.baseline_template=simple",
        "inference.batch_size=6", "inference.max_new_tokens=4", "inference.temperature=0.0",
        "inference.progress=false",
        "train.max_train_samples=16", "train.holdout_fraction=0.02", "train.micro_batch_size=4",
        "train.max_steps=2", "train.eval_every=2", "train.save_every=2", "train.max_length=256",
        "train.learning_rate=0.001",
        # timeout_min > 10: a USR2 then counts as a preemption, not as one of the few timeouts
        "executor.kind=slurm", "executor.cpus_per_task=1", "executor.mem_gb=2", "executor.timeout_min=30",
        "executor.cpu_stage.cpus_per_task=1", "executor.cpu_stage.mem_gb=1", "executor.cpu_stage.timeout_min=30",
        *overrides,
    ])


def book(exp: Path) -> dict:
    return json.loads((exp / "jobs.json").read_text())


def job_ids(exp: Path) -> dict[str, str]:
    """stage -> job id (array tasks as ``A_i``)."""
    return {e["stage"]: e["job_id"] for e in book(exp)["jobs"]}


def sacct(ids: list[str]) -> dict[str, dict]:
    """job id -> {state, start, end (datetime or None)}, array tasks expanded as ``A_i``."""
    bases = sorted({i.split("_")[0] for i in ids})
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Start,End", "-j", ",".join(bases)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = {}
    for line in out.splitlines():
        jid, state, start, end = line.split("|")
        rows[jid] = {"state": state.split()[0], "start": _time(start), "end": _time(end)}
    return rows


def _time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # Unknown / None
        return None


def status_text(exp: Path) -> str:
    out = subprocess.run([str(REPO / ".venv" / "bin" / "hsd"), "status", str(exp)], capture_output=True,
                         text=True, timeout=120)
    return out.stdout + out.stderr


def wait_for(check: Callable[[], bool], timeout: float, what: str, exp: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    detail = f"\n{status_text(exp)}" if exp else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def wait_finished(exp: Path, timeout: float) -> dict[str, dict]:
    """Wait until every job of the experiment is in a terminal state; return sacct rows by stage."""
    ids = job_ids(exp)

    def done() -> bool:
        rows = sacct(list(ids.values()))
        return all(rows.get(i, {}).get("state") in TERMINAL for i in ids.values())

    wait_for(done, timeout, f"the jobs of {exp.name} to finish", exp)
    rows = sacct(list(ids.values()))
    return {stage: rows[i] for stage, i in ids.items()}
