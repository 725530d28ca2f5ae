"""On the project's multi-node Slurm (tests/slurm/slurm.sh: nodes hsdn1, hsdn2, each a slurmd in
network + UTS namespaces of its own): one job across two nodes, gloo on CPU.

Each 2-node job is compared with the same job on one node with the same world size (two tasks on
one node, one task on each of two nodes), so only the nodes differ: the validation's merged
records and the training's losses must be the same. The 2-node training is sent USR2 mid-run
(what Slurm sends before a time limit or preemption; submitit checkpoints and requeues): it must
resume on its next allocation and still end with the 1-node run's losses (one job proves both, to
keep the suite short). A 2-node validation whose second node's task is SIGKILLed must end within
60 s as FAILED with one error naming that node, and ``hsd submit resume`` must finish it. All jobs
are submitted together and share one module fixture, so the cluster works on them at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from _slurm_helpers import REPO, TERMINAL, job_ids, require_slurm, sacct, status_text, tiny_config, wait_finished, \
    wait_for
from hsd.config import to_dict
from jobs.executor import make_executor, submit
from jobs.pipeline import submit_command
from jobs.train_job import TrainJob
from jobs.validate_job import ValidateJob

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

TRAIN_STEPS = 10
INTERRUPT_AT = 3
KILL_SAMPLES = 24
# one node x two tasks, two nodes x one task: the same world size
LAYOUTS = {"1node": ("executor.nodes=1", "executor.tasks_per_node=2"), "2node": ("executor.nodes=2",)}


def _nodes_of(jid: str) -> str:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "NodeList", "-j", jid], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    return out[-1] if out else ""


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _records(run: Path) -> list[dict]:
    (merged,) = run.glob("intermediate_results_*.jsonl")
    rows = [json.loads(line) for line in merged.read_text().splitlines() if line.strip()]
    # which rank evaluated a sample and how long it took differ by layout; nothing else may
    return sorted(({k: v for k, v in r.items() if k not in ("rank", "latency_s")} for r in rows),
                  key=lambda r: r["sample_id"])


def _last_step(run: Path) -> int:
    log = run / "train_log.jsonl"
    return max((json.loads(l)["step"] for l in log.read_text().splitlines() if l.strip()), default=0) \
        if log.exists() else 0


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, tuple[str, Path]]:
    """Submit every job at once (validation and training, on 1 and 2 nodes, plus the interrupted
    2-node training); USR2 the latter once it is past step INTERRUPT_AT; wait for all."""
    require_slurm()
    from hsd.training.ftdata import run as ftdata

    results = tmp_path_factory.mktemp("slurm-multinode")
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    out: dict[str, tuple[str, Path]] = {}
    try:
        for layout, keys in LAYOUTS.items():
            cfg = tiny_config(results, tiny_model_dir, f"val-{layout}", *keys)
            run = results / f"val-{layout}" / "val"
            ex = make_executor(cfg.executor, results / f"val-{layout}", f"val-{layout}")
            out[f"val-{layout}"] = (submit(ex, [ValidateJob(to_dict(cfg), run_dir=str(run))], "val")[0].job_id, run)
        data = None
        for name, keys in (("train-1node", LAYOUTS["1node"]), ("requeued-2node", LAYOUTS["2node"])):
            cfg = tiny_config(results, tiny_model_dir, name, *keys, f"train.max_steps={TRAIN_STEPS}",
                              "train.save_every=1000", "train.eval_every=1000")
            data = data or ftdata(cfg, results / "ftdata")
            run = results / name / "run"
            ex = make_executor(cfg.executor, results / name, name)
            out[name] = (submit(ex, [TrainJob(to_dict(cfg), run_dir=str(run), data_dir=str(data))], name)[0].job_id,
                         run)
        # slow enough to be killed mid-run (as test_slurm_requeue's: the long prompt, 16 new tokens,
        # batches of 2, 12 per rank); through hsd submit, so that hsd submit resume can finish it
        cfg = tiny_config(results, tiny_model_dir, "killed", "executor.nodes=2", f"data.max_samples={KILL_SAMPLES}",
                          "inference.batch_size=2", "inference.max_new_tokens=16", "prompt.template=rich",
                          "pipeline.baseline_template=rich")
        exp = submit_command("baseline", cfg)
        out["killed"] = (job_ids(exp)["baseline"], exp)
    finally:
        mp.undo()
    _interrupt_when_ready(out)
    for name, (jid, _) in out.items():
        wait_for(lambda: sacct([jid]).get(jid, {}).get("state") in TERMINAL, 600, f"job {name} ({jid})")
    return out


def _task_pids(jid: str, rank: int) -> list[int]:
    """The python processes of task ``rank`` of job ``jid`` (slurmd's namespaces share our PID view)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"SLURM_JOB_ID={jid}".encode() in env and f"SLURM_PROCID={rank}".encode() in env and b"submitit" in cmd:
            pids.append(int(proc.name))
    return pids


KILLED_AT: dict[str, float] = {}


def _kill_rank1(jid: str) -> None:
    pids = _task_pids(jid, 1)
    assert pids, f"no process of task 1 of job {jid}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    KILLED_AT[jid] = time.time()


def _interrupt_when_ready(jobs: dict[str, tuple[str, Path]]) -> None:
    """SIGKILL rank 1 (on hsdn2) of the validation once it has recorded a batch; USR2 the 2-node
    training once it is past step INTERRUPT_AT (USR2 alone, see test_slurm_requeue; scancel
    --signal reaches every task of the job, on both nodes). Both watched at once: neither may
    finish before its interruption."""
    usr2 = lambda jid: subprocess.run(["scancel", "--signal=USR2", jid], check=True)  # noqa: E731
    shard = jobs["killed"][1] / "baseline" / "shards" / "rank1.jsonl"
    actions = {"killed": (lambda: shard.exists() and shard.read_bytes().count(b"\n") >= 1, _kill_rank1),
               "requeued-2node": (lambda: _last_step(jobs["requeued-2node"][1]) >= INTERRUPT_AT, usr2)}
    deadline = time.monotonic() + 400
    while actions and time.monotonic() < deadline:
        for name, (ready, act) in list(actions.items()):
            jid = jobs[name][0]
            if ready():
                act(jid)
                del actions[name]
            elif sacct([jid]).get(jid, {}).get("state") in TERMINAL:
                pytest.fail(f"job {name} ({jid}) ended before it could be interrupted: {sacct([jid])}")
        time.sleep(0.2)
    assert not actions, f"never interrupted (no progress in 400 s): {sorted(actions)}"


def _completed_on(jobs: dict, name: str, nodes: str) -> Path:
    jid, run = jobs[name]
    assert sacct([jid])[jid]["state"] == "COMPLETED", (name, sacct([jid]), sorted(run.parent.glob("submitit/*.err")))
    assert _nodes_of(jid) == nodes, (name, _nodes_of(jid))
    return run


def test_a_validation_over_two_nodes_merges_the_records_of_one_node(jobs) -> None:
    one = _completed_on(jobs, "val-1node", _nodes_of(jobs["val-1node"][0]))
    two = _completed_on(jobs, "val-2node", "hsdn[1-2]")
    assert _nodes_of(jobs["val-1node"][0]) in {"hsdn1", "hsdn2"}
    records = _records(two)
    assert len(records) == 6 and records == _records(one)
    ranks = {json.loads(l)["rank"] for p in (two / "shards").glob("rank*.jsonl") for l in p.read_text().splitlines()}
    assert ranks == {0, 1}  # both nodes' ranks evaluated samples


def test_a_requeued_lora_training_over_two_nodes_resumes_with_the_losses_of_one_node(jobs) -> None:
    one = _completed_on(jobs, "train-1node", _nodes_of(jobs["train-1node"][0]))
    run = _completed_on(jobs, "requeued-2node", "hsdn[1-2]")
    jid = jobs["requeued-2node"][0]
    attempts = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State", "-j", jid], capture_output=True,
                              text=True, check=True).stdout
    assert "REQUEUED" in attempts, attempts
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETED" and (run / "adapter" / "adapter_config.json").exists()
    assert manifest["resumed_at"] and manifest["resumed_at"][0] >= INTERRUPT_AT, manifest  # not from step 0
    assert [s for s, _ in _losses(run)] == list(range(1, TRAIN_STEPS + 1))  # each step once, in order
    assert [l for _, l in _losses(run)] == pytest.approx([l for _, l in _losses(one)], rel=1e-5)


def test_a_killed_node_task_ends_the_job_in_a_minute_and_resume_finishes_it(jobs) -> None:
    jid, exp = jobs["killed"]
    row = sacct([jid])[jid]
    assert row["state"] == "FAILED", row
    assert row["end"].timestamp() - KILLED_AT[jid] < 60, (row, KILLED_AT[jid])
    status = status_text(exp)
    line = next(l for l in status.splitlines() if l.startswith("baseline"))
    assert "FAILED" in line and "hsdn2" in line, status  # the node the failure came from
    out = subprocess.run([str(REPO / ".venv" / "bin" / "hsd"), "submit", "resume", str(exp)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = wait_finished(exp, timeout=600)
    assert rows["baseline"]["state"] == "COMPLETED", status_text(exp)
    run = exp / "baseline"
    ids = [json.loads(l)["sample_id"] for p in (run / "shards").glob("rank*.jsonl") for l in p.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == KILL_SAMPLES  # the killed attempt's records kept, none repeated
    assert json.loads((run / "manifest.json").read_text())["resumed"] > 0
