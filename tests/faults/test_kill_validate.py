"""Validation killed with SIGKILL at seeded points and resumed: nothing lost, nothing twice,
records equal to an uninterrupted greedy run."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from _run_helpers import (comparable, hsd_cmd, kill, lines, merged_records, run_here, shard_ids, start, wait_for,
                          write_config)

pytestmark = [pytest.mark.faults, pytest.mark.integration]

N, BATCH, KILLS, SEED = 32, 2, 5, 20250805


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    """The uninterrupted run, in this process."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = write_config(tmp, tiny_model_dir, synthetic=N, inference={"batch_size": BATCH})
    return cfg, merged_records(run_here(cfg, tmp / "run"))


def kill_schedule(rng: random.Random) -> list[tuple[str, int, float]]:
    """(kind, batches this attempt must write, fraction of a batch to wait after them) per kill.

    ``between``: killed as soon as a batch is on disk, before the next one is written.
    ``mid``: the attempt's batch time is measured between its last two writes, then the kill
    comes at a random fraction of it: inside the next batch's generation. Both kinds occur, and
    at most 3 + 3 + 3 + 2 + 2 of the 16 batches are written before the fifth kill.
    """
    kinds = ["between", "between", "mid", "mid", rng.choice(["between", "mid"])]
    rng.shuffle(kinds)
    return [("between", rng.choice([1, 2]), 0.0) if k == "between" else ("mid", 2, rng.uniform(0.2, 0.8))
            for k in kinds]


def kill_at(cmd, shard, log, target: int, fraction: float) -> tuple[float, int]:
    """Run ``cmd`` until ``shard`` has ``target`` lines (+ ``fraction`` of a batch); SIGKILL it."""
    proc = start(cmd, log)
    if fraction:
        wait_for(lambda: lines(shard) >= target - BATCH, proc, log)
        t0 = time.monotonic()
    wait_for(lambda: lines(shard) >= target, proc, log)
    delay = fraction * (time.monotonic() - t0) if fraction else 0.0
    time.sleep(delay)
    kill(proc)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    return delay, lines(shard)


def test_five_sigkills_then_resume_equal_uninterrupted_run(reference, tmp_path):
    cfg, expected = reference
    run_dir = tmp_path / "killed"
    shard, log = run_dir / "shards" / "rank0.jsonl", tmp_path / "attempts.log"
    cmd = hsd_cmd("validate", "--config", str(cfg), "--run-dir", str(run_dir))
    done: list[str] = []
    points = []
    for kind, batches, fraction in kill_schedule(random.Random(SEED)):
        target = len(done) + batches * BATCH
        delay, at_kill = kill_at(cmd, shard, log, target, fraction)
        now = shard_ids(shard)
        points.append((kind, target, round(delay, 3), at_kill))
        assert len(now) == len(set(now)), f"a sample recorded twice after the kill at {points[-1]}"
        assert now[: len(done)] == done, "records written before a kill were lost"
        assert len(done) < len(now) < N, f"no progress or no kill: {points}"
        assert not list(run_dir.glob("intermediate_results_*")), "a killed run must not have merged"
        done = now
    print("kill points (kind, lines awaited, delay s, lines at kill):", points)

    run_here(cfg, run_dir)  # the last resume in this process: it saves an interpreter start-up
    ids = shard_ids(shard, torn_tail_ok=False)
    assert sorted(ids) == sorted(expected), "lost or extra samples"
    assert len(ids) == len(set(ids)) == N, "a sample recorded twice"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["attempt"] == KILLS + 1 and manifest["resumed"] == len(done)
    assert manifest["evaluated_this_attempt"] == N - len(done)
    records = merged_records(run_dir)
    assert {k: comparable(v) for k, v in records.items()} == {k: comparable(v) for k, v in expected.items()}


def test_torn_last_line_is_dropped_and_redone(reference, tmp_path):
    cfg, expected = reference
    ordered = [expected[k] for k in sorted(expected)]
    run_dir = tmp_path / "torn"
    (run_dir / "shards").mkdir(parents=True)
    shard = run_dir / "shards" / "rank0.jsonl"
    torn = json.dumps(ordered[5])
    shard.write_text("".join(json.dumps(r) + "\n" for r in ordered[:5]) + torn[: len(torn) // 2])

    run_here(cfg, run_dir)

    ids = shard_ids(shard, torn_tail_ok=False)  # every line parses: the torn one was cut
    assert ids[:5] == [r["sample_id"] for r in ordered[:5]]
    assert sorted(ids) == sorted(expected) and ids.count(ordered[5]["sample_id"]) == 1
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["resumed"] == 5 and manifest["evaluated_this_attempt"] == N - 5
    records = merged_records(run_dir)
    assert {k: comparable(v) for k, v in records.items()} == {k: comparable(v) for k, v in expected.items()}
    (log,) = run_dir.glob("validation_log_*.log")
    assert "torn last line" in log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_says_so_and_resumes(reference, tmp_path, sig):
    """Ctrl-C or SIGTERM mid-run: one line, exit 130/143, manifest INTERRUPTED (not RUNNING), the
    lock free, every record kept; the same command then completes with the uninterrupted records."""
    cfg, expected = reference
    run_dir = tmp_path / "interrupted"
    shard, log = run_dir / "shards" / "rank0.jsonl", tmp_path / "attempt.log"
    # with the process that prepares the baseline's collation (hsd.recipes.collate_ahead), as on a GPU
    proc = start(hsd_cmd("validate", "--config", str(cfg), "--run-dir", str(run_dir), "report.collate_ahead=true"), log)
    try:
        wait_for(lambda: lines(shard) >= 2 * BATCH, proc, log)
        proc.send_signal(sig)
        code = proc.wait(timeout=300)
        with pytest.raises(ProcessLookupError):  # nothing of the command is left running
            os.killpg(proc.pid, 0)
    finally:
        kill(proc)
    out = log.read_text()
    assert code == (130 if sig == signal.SIGINT else 143), out[-3000:]
    assert "Traceback" not in out and len([x for x in out.splitlines() if x.startswith("interrupted")]) == 1, out[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "INTERRUPTED" and manifest["attempt"] == 1, manifest
    kept = shard_ids(shard)
    assert 2 * BATCH <= len(kept) < N

    run_here(cfg, run_dir)  # the lock was released: the resume takes it
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETED" and manifest["attempt"] == 2 and manifest["resumed"] == len(kept)
    records = merged_records(run_dir)
    assert {k: comparable(v) for k, v in records.items()} == {k: comparable(v) for k, v in expected.items()}
