"""One run directory, one driver: a second process on the same run is refused, and runs with
default (timestamped) names never share a directory, even when started in the same second."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from _run_helpers import (REPO, hsd_cmd, hsd_env, kill, merged_records, run_here, snapshot, start, wait_for,
                          write_config)

pytestmark = [pytest.mark.faults, pytest.mark.integration]
N = 8


def _holder(lock) -> int | None:
    try:
        match = re.match(r"pid (\d+) ", lock.read_text())
    except FileNotFoundError:
        return None
    return int(match.group(1)) if match else None


def test_second_process_on_same_run_dir_refuses(tiny_model_dir, tmp_path):
    cfg = write_config(tmp_path, tiny_model_dir, synthetic=N, experiment="faults")
    run_dir = tmp_path / "shared_run"
    cmd = hsd_cmd("validate", "--config", str(cfg), "--run-dir", str(run_dir))
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs = [start(cmd, log) for log in logs]  # both start at once; one of them gets the lock
    try:
        wait_for(lambda: _holder(run_dir / ".lock") is not None, procs[0], logs[0])
        holder = _holder(run_dir / ".lock")
        winner = next(i for i, p in enumerate(procs) if p.pid == holder)
        os.killpg(holder, signal.SIGSTOP)  # keep the lock held while the other one gets there
        loser = procs[1 - winner]
        before = snapshot(run_dir)
        assert loser.wait(timeout=600) == 2, logs[1 - winner].read_text()[-3000:]
        out = logs[1 - winner].read_text()
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "is in use by pid" in errors[0] and str(holder) in errors[0], out[-3000:]
        assert "Traceback" not in out
        assert snapshot(run_dir) == before, "the refused process changed the run directory"
        os.killpg(holder, signal.SIGCONT)
        assert procs[winner].wait(timeout=600) == 0, logs[winner].read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGCONT)
            kill(p)
    records = merged_records(run_dir)
    assert len(records) == N
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["attempt"] == 1 and manifest["status"] == "COMPLETED"


def test_default_run_dirs_never_shared(tiny_model_dir, tmp_path):
    """Runs that took every default name of the coming two minutes: this run must take none of them."""
    cfg = write_config(tmp_path, tiny_model_dir, synthetic=N, experiment="faults")
    exp = tmp_path / "results" / "faults"
    now = dt.datetime.now()
    for second in range(-2, 120):
        taken = exp / f"validate_simple_{(now + dt.timedelta(seconds=second)):%Y%m%d_%H%M%S}"
        taken.mkdir(parents=True)
        (taken / "manifest.json").write_text('{"status": "running", "owner": "another run"}\n')
    before = snapshot(exp)

    path = run_here(cfg)

    assert re.fullmatch(r"validate_simple_\d{8}_\d{6}-2", path.name), path.name
    others = {k: v for k, v in snapshot(exp).items() if not k.startswith(path.name + "/")}
    assert others == before, "a directory of another run was changed"
    assert len(merged_records(path)) == N


def test_racing_processes_get_distinct_dirs(tmp_path):
    """8 processes ask for the same run name at the same instant: 8 directories."""
    go = time.time() + 3.0
    code = ("import sys, time; from hsd.runs import new_run_dir; time.sleep(max(0.0, float(sys.argv[1]) - time.time())); "
            "print(new_run_dir(sys.argv[2], 'race', 'validate_simple_20250101_000000'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(go), str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=hsd_env(), cwd=REPO) for _ in range(8)]
    paths = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(paths)) == 8, paths
    assert sorted(os.listdir(tmp_path / "race")) == sorted(os.path.basename(p) for p in paths)
