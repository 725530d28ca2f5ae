"""On the project's real Slurm: interrupted jobs are requeued and lose nothing, repeat nothing.

A validation and a training run side by side, each sent USR2 by hand (``scancel --signal=USR2``,
what Slurm sends before the time limit) once it has made progress; then a validation is
preempted for real by a job in the higher-priority partition ``high`` that needs the whole
node. (USR2 alone: ``job._interrupt()`` also sends SIGTERM, which races submitit's requeue.)
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from _slurm_helpers import TERMINAL, require_slurm, sacct, tiny_config, wait_for
from hsd.config import Config, to_dict
from jobs.executor import make_executor, submit
from jobs.train_job import TrainJob
from jobs.validate_job import ValidateJob

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

N_SAMPLES = 24
TRAIN_STEPS = 40


def _validation_config(results: Path, model: Path, name: str) -> Config:
    # several small batches, so the interruption lands mid-run
    # The rich prompt (~2k tokens) makes each batch ~0.5 s on 2 cores: slow enough that the
    # interruption lands mid-run. With the short simple prompt the whole run can finish before
    # Slurm delivers the signal, and there is nothing left to resume.
    return tiny_config(results, model, name, f"data.max_samples={N_SAMPLES}", "inference.batch_size=2",
                       "inference.max_new_tokens=16", "prompt.template=rich")


def _submit_validation(results: Path, model: Path, name: str, after: str | None = None) -> tuple[str, Path]:
    cfg = _validation_config(results, model, name)
    run = results / name / "val"
    ex = make_executor(cfg.executor, results / name, name, dependency=after)
    return submit(ex, [ValidateJob(to_dict(cfg), run_dir=str(run))], name)[0].job_id, run


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _last_step(log: Path) -> int:
    steps = [json.loads(l)["step"] for l in log.read_text().splitlines() if l.strip()] if log.exists() else []
    return max(steps, default=0)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, tuple[str, Path]]:
    """Submit the three jobs, interrupt each once it has made progress; return job id + run dir."""
    require_slurm()
    from hsd.training.ftdata import run as ftdata

    results = tmp_path_factory.mktemp("slurm-requeue")
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    try:
        jobs = {"usr2": _submit_validation(results, tiny_model_dir, "usr2")}
        cfg = tiny_config(results, tiny_model_dir, "train", f"train.max_steps={TRAIN_STEPS}",
                          "train.save_every=1000", "train.eval_every=1000")
        data = ftdata(cfg, results / "train" / "ftdata")
        ex = make_executor(cfg.executor, results / "train", "train")
        run = results / "train" / "run"
        jobs["train"] = (submit(ex, [TrainJob(to_dict(cfg), run_dir=str(run), data_dir=str(data))], "train")[0].job_id, run)
        # Preempting for the whole node would hit every job running in `debug`: this one starts
        # once the others are done, so the preemption is the only interruption it sees.
        after = f"afterany:{jobs['usr2'][0]}:{jobs['train'][0]}"
        jobs["preempted"] = _submit_validation(results, tiny_model_dir, "preempted", after)
    finally:
        mp.undo()
    _interrupt_when_ready(jobs)
    return jobs


def _interrupt_when_ready(jobs: dict[str, tuple[str, Path]]) -> None:
    usr2 = lambda jid: subprocess.run(["scancel", "--signal=USR2", jid], check=True)  # noqa: E731
    # a job in `high` asking for the whole node the job runs on (the cluster has several): Slurm
    # must preempt what runs there in `debug`
    preempt = lambda jid: subprocess.run(  # noqa: E731
        ["sbatch", "-p", "high", "-c", "8", "--mem=500M", "-J", "hsd-preemptor", "-o", "/dev/null",
         "-w", _node_of(jid), "--wrap", "sleep 2"], check=True, capture_output=True)
    actions = {
        "usr2": (lambda run: _lines(run / "shards" / "rank0.jsonl") >= 2, usr2),
        "train": (lambda run: _last_step(run / "train_log.jsonl") >= 3, usr2),
        "preempted": (lambda run: _lines(run / "shards" / "rank0.jsonl") >= 2, preempt),
    }
    deadline = time.monotonic() + 300
    while actions and time.monotonic() < deadline:
        for name, (ready, act) in list(actions.items()):
            jid, run = jobs[name]
            if ready(run):
                act(jid)
                del actions[name]
            elif sacct([jid]).get(jid, {}).get("state") in TERMINAL:
                pytest.fail(f"job {name} ({jid}) ended before it could be interrupted: {sacct([jid])}")
        time.sleep(0.2)
    assert not actions, f"never interrupted (no progress in 300 s): {sorted(actions)}"


def _node_of(jid: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", jid, "-o", "%N"], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def _wait_completed(jid: str, timeout: float = 240) -> None:
    wait_for(lambda: sacct([jid]).get(jid, {}).get("state") in TERMINAL, timeout, f"job {jid}")
    assert sacct([jid])[jid]["state"] == "COMPLETED", sacct([jid])


def _attempts(jid: str) -> list[str]:
    """Every record Slurm kept for the job, oldest first (a requeue adds one)."""
    out = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State", "-j", jid],
                         capture_output=True, text=True, check=True).stdout
    return [line.split("|")[1].split()[0] for line in out.splitlines() if line.split("|")[0] == jid]


def _check_each_sample_once(run: Path) -> None:
    ids = [json.loads(l)["sample_id"] for p in (run / "shards").glob("rank*.jsonl")
           for l in p.read_text().splitlines() if l.strip()]
    assert len(ids) == N_SAMPLES and max(Counter(ids).values()) == 1, Counter(ids).most_common(3)
    (merged,) = run.glob("intermediate_results_*.jsonl")
    assert len({json.loads(l)["sample_id"] for l in merged.read_text().splitlines()}) == N_SAMPLES
    manifest = json.loads((run / "manifest.json").read_text())
    # it really resumed mid-run: both attempts evaluated samples
    assert manifest["attempt"] >= 2 and 0 < manifest["resumed"] < N_SAMPLES, manifest
    assert manifest["evaluated_this_attempt"] == N_SAMPLES - manifest["resumed"], manifest


def test_validation_sent_usr2_is_requeued_and_records_every_sample_once(interrupted) -> None:
    jid, run = interrupted["usr2"]
    _wait_completed(jid)
    assert "REQUEUED" in _attempts(jid), _attempts(jid)
    _check_each_sample_once(run)


def test_validation_preempted_by_the_high_partition_resumes_where_it_stopped(interrupted) -> None:
    jid, run = interrupted["preempted"]
    _wait_completed(jid)
    assert set(_attempts(jid)[:-1]) & {"PREEMPTED", "REQUEUED"}, _attempts(jid)
    _check_each_sample_once(run)


def test_training_sent_usr2_continues_from_its_checkpoint(interrupted) -> None:
    jid, run = interrupted["train"]
    _wait_completed(jid)
    assert "REQUEUED" in _attempts(jid), _attempts(jid)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETED" and manifest["steps"] == TRAIN_STEPS, manifest
    assert manifest["resumed_at"] and manifest["resumed_at"][0] >= 3, manifest  # not from step 0
    steps = [json.loads(l)["step"] for l in (run / "train_log.jsonl").read_text().splitlines()
             if "loss" in json.loads(l)]
    assert steps == list(range(1, TRAIN_STEPS + 1)), steps  # each step once, in order
    assert (run / "adapter" / "adapter_config.json").exists()
