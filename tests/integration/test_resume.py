"""A validation SIGKILLed mid-run and restarted ends with every sample once, as if never killed."""

from __future__ import annotations

import json
import signal

import pytest

from _run_helpers import (N_SAMPLES, comparable, hsd_cmd, kill, lines, merged_records, shard_ids, start, wait_for,
                          write_config)
from hsd.config import load_config
from hsd.recipes.validate import run

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def kill_after_first_batches(cmd, shard, log, min_lines=2):
    """Start ``cmd``; SIGKILL its process group once ``shard`` holds ``min_lines`` lines."""
    proc = start(cmd, log)
    wait_for(lambda: lines(shard) >= min_lines, proc, log, poll=0.005)
    kill(proc)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def test_sigkill_then_resume_equals_uninterrupted(tiny_model_dir, tmp_path):
    cfg = write_config(tmp_path, tiny_model_dir, inference={"batch_size": 2})  # 10 batches: room to kill mid-run
    reference = merged_records(run(load_config(cfg), tmp_path / "reference"))

    run_dir = tmp_path / "killed"
    shard = run_dir / "shards" / "rank0.jsonl"
    kill_after_first_batches(hsd_cmd("validate", "--config", str(cfg), "--run-dir", str(run_dir)), shard,
                             tmp_path / "killed.log")
    done = shard_ids(shard)
    assert 0 < len(done) < N_SAMPLES, f"killed after {len(done)} of {N_SAMPLES}: not mid-run"
    assert not list(run_dir.glob("intermediate_results_*")), "a killed run must not have merged"

    # A write the kill cut in half: that sample must be redone, and the file stay valid JSONL.
    torn_id = next(k for k in sorted(reference) if k not in done)
    line = json.dumps(reference[torn_id])
    with open(shard, "a") as fh:
        fh.write(line[: len(line) // 2])

    run(load_config(cfg), run_dir)  # the restart (in-process: the CLI path is what was killed)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["attempt"] == 2 and manifest["resumed"] == len(done)
    assert manifest["evaluated_this_attempt"] == N_SAMPLES - len(done)
    ids = shard_ids(shard, torn_tail_ok=False)  # every line parses: the torn tail was cut before appending
    assert sorted(ids) == sorted(reference) and ids[: len(done)] == done
    assert ids.count(torn_id) == 1
    records = merged_records(run_dir)
    assert {k: comparable(v) for k, v in records.items()} == {k: comparable(v) for k, v in reference.items()}
    log = next(run_dir.glob("validation_log_*.log")).read_text()
    assert "attempt 1" in log and "attempt 2" in log and "torn last line" in log
