"""Every sharded (lock-step) backend through ``hsd validate`` itself on 2 gloo ranks (torchrun).

Per backend, one launch covers what a user relies on: it resumes a run a single process started
(7 of 20 samples already recorded), shards the rest over the two ranks (disjoint shard files,
uneven shares, so one rank joins the other's last steps in ``finish``), survives an out-of-memory
error injected on rank 1 at its second batch (every rank halves its batch and retries), and
merges records equal to a single-process ``hf`` run. Score mode runs once per backend. A rank
SIGKILLed mid-run ends the whole job instead of leaving the other waiting.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from _run_helpers import (N_SAMPLES, REPO, comparable, hsd_cmd, hsd_env, launch, merged_records, seed_shard, shard_ids,
                          write_config)
from hsd.config import load_config
from hsd.distributed import free_port
from hsd.recipes.validate import run

pytestmark = [pytest.mark.integration, pytest.mark.faults]
BACKENDS = ("deepspeed", "tp")
RESUMED = 7


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    """One process, the hf backend: the records every sharded run must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = write_config(tmp, tiny_model_dir)
    gen = merged_records(run(load_config(cfg), tmp / "generate"))
    score = merged_records(run(load_config(cfg, ["inference.mode=score"]), tmp / "score"))
    return cfg, gen, score


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_shard_and_injected_oom_give_the_single_process_records(reference, tmp_path, backend):
    cfg, expected, _ = reference
    run_dir = tmp_path / "run"
    seed_shard(run_dir, expected, RESUMED)  # a single-process run stopped after 7 samples
    res = launch("torchrun", cfg, run_dir, f"inference.backend={backend}", HSD_INJECT_FAULT="oom:1:2")

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETED" and manifest["world_size"] == 2
    assert manifest["resumed"] == RESUMED and manifest["evaluated_this_attempt"] == N_SAMPLES - RESUMED
    new0 = shard_ids(run_dir / "shards" / "rank0.jsonl", torn_tail_ok=False)[RESUMED:]
    new1 = shard_ids(run_dir / "shards" / "rank1.jsonl", torn_tail_ok=False)
    assert new0 and new1 and not set(new0) & set(new1) and len(new0) != len(new1)
    records = merged_records(run_dir)
    assert {k: comparable(v) for k, v in records.items()} == {k: comparable(v) for k, v in expected.items()}
    log = res.stderr  # every rank's log lines (the run's log file holds rank 0's)
    assert "[rank 1] WARNING hsd.inference.lockstep: rank 1: HSD_INJECT_FAULT: out of memory injected" in log
    for rank in (0, 1):  # both ranks halved their batch, and each held about half of the model
        assert f"rank {rank}: out of memory on " in log and "every rank retries with 2" in log, log[-3000:]
        held = [line for line in log.splitlines() if f"rank {rank} holds " in line]
        assert held, log[-3000:]
        share = float(held[0].rsplit("(", 1)[1].rstrip("%)"))
        assert 45.0 < share < 60.0, held[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_score_mode_equals_the_single_process_probabilities(reference, tmp_path, backend):
    cfg, _, expected = reference
    launch("torchrun", cfg, tmp_path / "run", f"inference.backend={backend}", "inference.mode=score")
    records = merged_records(tmp_path / "run")
    assert sorted(records) == sorted(expected)
    for k, rec in records.items():
        assert rec["p_hate"] == pytest.approx(expected[k]["p_hate"], abs=1e-5)
        assert rec["predicted_label"] == expected[k]["predicted_label"]


def test_a_killed_rank_ends_the_job(reference, tmp_path):
    """Two ranks started as submitit's local executor does (no torchrun to kill the survivor):
    rank 1 SIGKILLs itself at its second batch; rank 0 must stop with an error, not wait."""
    cfg, _, _ = reference
    port = free_port()
    cmd = hsd_cmd("validate", "--config", str(cfg), "--run-dir", str(tmp_path / "run"), "inference.backend=tp")
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=hsd_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                      MASTER_PORT=str(port), HSD_INJECT_FAULT="kill:1:2"))
             for r in (0, 1)]
    started = time.monotonic()
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[1].returncode == -signal.SIGKILL
    assert procs[0].returncode != 0, outs[0][1][-3000:]
    assert time.monotonic() - started < 300
    assert not list((tmp_path / "run").glob("intermediate_results_*.jsonl"))  # nothing merged
