"""jobs.status, jobs.book, jobs.cancel: scheduler states, progress, jobs.json read anywhere, local
jobs' states from their process groups (fake jobs: groups of sleeping processes), hsd cancel."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from hsd.runs import RunError
from jobs import local
from jobs.book import JOBS_FILE, load_book
from jobs.cancel import cancel_experiment
from jobs.status import _lookup, collect, log_error, training_progress, validation_progress


def test_array_tasks_find_their_pending_array_line() -> None:
    states = {"12_0": ("COMPLETED", ""), "12_[1-3,5]": ("PENDING", "Dependency"), "13": ("RUNNING", "")}
    assert _lookup(states, "12_0") == ("COMPLETED", "")
    assert _lookup(states, "12_2") == ("PENDING", "Dependency")
    assert _lookup(states, "12_5") == ("PENDING", "Dependency")
    assert _lookup(states, "12_4")[0] == "UNKNOWN"
    assert _lookup(states, "13") == ("RUNNING", "")


def test_progress_counts_complete_shard_lines_per_rank(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "rank0.jsonl").write_text('{"sample_id": "a"}\n{"sample_id": "c"}\n')
    (shards / "rank1.jsonl").write_text('{"sample_id": "b"}\n{"sample_id": "d"')  # torn last line
    (tmp_path / "manifest.json").write_text(json.dumps({"world_size": 2}))
    # no config.yaml: the total is unknown, the counts are still shown
    assert validation_progress(tmp_path) == "rank0 2/? rank1 1/?"


def _task_logs(exp: Path, job: str, tasks: dict[int, tuple[str, str]]) -> None:
    """submitit's logs of a Slurm job: rank -> (hostname, stderr text)."""
    logs = exp / "submitit"
    logs.mkdir(parents=True)
    for rank, (host, err) in tasks.items():
        (logs / f"{job}_{rank}_log.out").write_text(
            f"submitit INFO (2026-12-05 15:31:18,186) - Starting with JobEnvironment(job_id={job}, hostname={host}, "
            f"local_rank=0(1), node={rank}(2), global_rank={rank}(2))\n")
        (logs / f"{job}_{rank}_log.err").write_text(err)


def test_a_multi_node_job_shows_each_ranks_node(tmp_path: Path) -> None:
    from jobs.status import task_nodes

    _task_logs(tmp_path, "9", {0: ("hsdn1", ""), 1: ("hsdn2", "")})
    nodes = task_nodes(tmp_path, "9")
    assert nodes == {0: "hsdn1", 1: "hsdn2"}
    shards = tmp_path / "run" / "shards"
    shards.mkdir(parents=True)
    (shards / "rank0.jsonl").write_text('{"sample_id": "a"}\n')
    (shards / "rank1.jsonl").write_text('{"sample_id": "b"}\n{"sample_id": "d"}\n')
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"world_size": 2, "total_steps": 10}))
    assert validation_progress(tmp_path / "run", nodes) == "rank0@hsdn1 1/? rank1@hsdn2 2/?"
    assert validation_progress(tmp_path / "run", {0: "n1", 1: "n1"}) == "rank0 1/? rank1 2/?"  # one node: no names
    (tmp_path / "run" / "train_log.jsonl").write_text('{"step": 3, "loss": 2.0}\n')
    assert training_progress(tmp_path / "run", nodes) == "step 3/10 on hsdn1 (rank 0), hsdn2 (rank 1)"


def test_a_failure_names_the_rank_and_node_it_came_from(tmp_path: Path) -> None:
    peer = "hsd.watchdog.PeerFailedError: rank 0 stops the job: rank 1: ValueError: bad batch\n"
    _task_logs(tmp_path / "a", "9", {0: ("hsdn1", "Traceback\n" + peer),
                                     1: ("hsdn2", "Traceback (most recent call last):\nValueError: bad batch\n")})
    assert log_error(tmp_path / "a", "9") == "rank 1 on hsdn2: ValueError: bad batch"  # the cause, not the echo
    # a SIGKILLed task leaves no exception; srun's line says which node and task
    _task_logs(tmp_path / "b", "7", {0: ("hsdn1", peer + "srun: error: hsdn2: task 1: Killed\n"
                                                      "srun: error: hsdn1: task 0: Killed\nsrun: Force Terminated\n"),
                                           1: ("hsdn2", "")})
    assert log_error(tmp_path / "b", "7") == "task 1 on hsdn2: Killed"
    _task_logs(tmp_path / "c", "5", {0: ("hsdn1", "x\nRuntimeError: boom\n")})  # one node: the line as before
    assert log_error(tmp_path / "c", "5") == "RuntimeError: boom"


def test_training_progress_is_the_newest_logged_step(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"total_steps": 10}))
    (tmp_path / "train_log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
    assert training_progress(tmp_path) == "step 2/10"


# ---------------------------------------------------------------------------------------------
# jobs.json read anywhere, and local jobs' states from their processes (fake jobs: sleep groups)
# ---------------------------------------------------------------------------------------------


def _entry(stage: str, state: str, run_dir: str, **more) -> dict:
    return {"stage": stage, "step": stage, "index": 0, "kind": "validate", "job_id": "-", "run_dir": run_dir,
            "state": state, "after": [], "error": None, "attempts": [], **more}


def _write_book(exp: Path, jobs: list[dict], **more) -> Path:
    exp.mkdir(parents=True, exist_ok=True)
    (exp / JOBS_FILE).write_text(json.dumps({"experiment_dir": ".", "command": "baseline", "executor": "local",
                                             "submitted": "2026-01-01T00:00:00", "jobs": jobs} | more))
    return exp / JOBS_FILE


@pytest.fixture
def groups():
    """Start fake local jobs: each a process group of two sleeping processes, as a controller and
    its task are; all of them ended at the end of the test."""
    started: list[subprocess.Popen] = []

    def start(*shell: str) -> dict:
        proc = subprocess.Popen(["sh", "-c", " ".join(shell) or "sleep 60 & sleep 60 & wait"],
                                start_new_session=True)
        started.append(proc)
        deadline = time.monotonic() + 10
        while local._group_members(proc.pid) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"pgid": proc.pid, "start_time": local.start_time(proc.pid)}

    yield start
    for proc in started:
        if local.group_alive(proc.pid, None):
            os.killpg(proc.pid, 9)
        proc.wait()


def _gone_process() -> dict:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return {"pid": proc.pid, "host": None, "start_time": "0"}


def test_an_old_book_with_absolute_paths_is_read_where_the_experiment_is_now(tmp_path: Path) -> None:
    old = "/results/gone/e"  # where the experiment was submitted, before it was moved or copied
    exp = tmp_path / "moved" / "e"
    _write_book(exp, [_entry("baseline", "COMPLETED", f"{old}/baseline", log=f"{old}/submitit/7_0_log.out"),
                      _entry("collate", "FAILED", old), _entry("x", "FAILED", "/data/elsewhere")],
                experiment_dir=old)
    book = load_book(exp)
    assert [e["run_dir"] for e in book["jobs"]] == ["baseline", ".", "/data/elsewhere"]
    assert book["jobs"][0]["log"] == "submitit/7_0_log.out" and book["experiment_dir"] == "."
    _, rows = collect(exp)
    assert rows[0][2:] == ("COMPLETED", "baseline")  # was: ValueError ... is not in the subpath of ...


@pytest.mark.parametrize("content, problem", [
    (b'{"experiment_dir": ".", "command": "baseline", "jobs": [{"stage": "base', r"is not valid JSON .*line 1"),
    (b"[]", r"is not a job book hsd can read \(a JSON list instead of an object\)"),
    (b'{"command": "baseline", "executor": "local", "jobs": [{"stage": "caf\xe9"}]}', r"is not UTF-8 text \(byte 68\)"),
    (b'{"command": "baseline", "executor": "local", "jobs": [{"stage": "x"}]}', r"is not a job book hsd can read \(jobs\[0\] is not an entry with stage"),
])
def test_an_unreadable_book_is_one_error_naming_the_file_and_the_fix(tmp_path: Path, content: bytes,
                                                                      problem: str) -> None:
    (tmp_path / JOBS_FILE).write_bytes(content)
    with pytest.raises(RunError, match=f"^{tmp_path / JOBS_FILE} {problem}.*restore .* or submit the experiment again"):
        load_book(tmp_path)


def test_local_states_follow_the_job_processes_and_the_submitting_process(tmp_path: Path, groups) -> None:
    driver = {"pid": groups()["pgid"], "host": None, "start_time": None}  # a live "hsd submit"
    running, gone = groups(), groups()
    os.killpg(gone["pgid"], 9)
    jobs = [_entry("a", "RUNNING", "a", job_id="1", process=running), _entry("b", "RUNNING", "b", job_id="2", process=gone),
            _entry("c", "PENDING", "c")]
    _write_book(tmp_path, jobs, driver=driver)
    deadline = time.monotonic() + 10
    while local.job_alive(gone) and time.monotonic() < deadline:
        time.sleep(0.01)
    states = {e["stage"]: e["state"] for e in collect(tmp_path)[0]["jobs"]}
    assert states == {"a": "RUNNING", "b": "LOST", "c": "PENDING"}  # c: its hsd submit will start it
    _write_book(tmp_path, jobs, driver=_gone_process())
    _, rows = collect(tmp_path)
    assert rows[2][2:] == ("CANCELLED", "never started: the hsd submit that was to run it ended first")


def test_cancel_stops_the_groups_of_a_killed_submission_and_a_finished_one_is_left_alone(
        tmp_path: Path, groups, monkeypatch: pytest.MonkeyPatch) -> None:
    job, stubborn = groups(), groups("trap '' TERM; sleep 60 & sleep 60 & wait")
    _write_book(tmp_path, [_entry("a", "RUNNING", "a", job_id=str(job["pgid"]), process=job),
                           _entry("b", "RUNNING", "b", job_id=str(stubborn["pgid"]), process=stubborn),
                           _entry("c", "PENDING", "c"), _entry("d", "COMPLETED", "d")], driver=_gone_process())
    monkeypatch.setattr(local, "STOP_GRACE_S", 0.5)  # the stubborn group: SIGKILL after the grace
    lines = cancel_experiment(tmp_path)
    assert lines[:2] == [f"cancelled a (job {job['pgid']}): stopped", f"cancelled b (job {stubborn['pgid']}): killed"]
    assert lines[-1] == f"resume with: hsd submit resume {tmp_path}"
    assert not local.job_alive(job) and not local.job_alive(stubborn)
    book = json.loads((tmp_path / JOBS_FILE).read_text())
    assert [(e["stage"], e["state"]) for e in book["jobs"]] == [("a", "CANCELLED"), ("b", "CANCELLED"),
                                                               ("c", "CANCELLED"), ("d", "COMPLETED")]
    before = (tmp_path / JOBS_FILE).read_bytes()
    assert cancel_experiment(tmp_path) == [f"nothing to cancel: every job of {tmp_path} has ended "
                                           "(3 CANCELLED, 1 COMPLETED)"]
    assert (tmp_path / JOBS_FILE).read_bytes() == before


def test_resume_of_a_running_local_experiment_names_hsd_cancel(tmp_path: Path, groups) -> None:
    from jobs.resume import resume_experiment

    job = groups()
    _write_book(tmp_path, [_entry("a", "RUNNING", "a", job_id=str(job["pgid"]), process=job)], driver=_gone_process())
    with pytest.raises(RunError, match=r"a \(RUNNING\) not finished yet; .* or stop them \(hsd cancel "):
        resume_experiment(str(tmp_path), [])


def test_cancel_on_slurm_scancels_only_the_unfinished_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"sacct": 'printf "12|COMPLETED\\n13|RUNNING\\n14|PENDING\\n"',
                       "squeue": 'printf "14|PENDING|Dependency\\n"',
                       "scancel": f'echo "$@" >> {tmp_path / "scancelled"}'}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    exp = tmp_path / "e"
    _write_book(exp, [_entry("baseline", "PENDING", "baseline", job_id="12"),
                      _entry("train", "PENDING", "train", job_id="13"), _entry("collate", "PENDING", ".", job_id="14")],
                executor="slurm")
    assert cancel_experiment(exp) == ["cancelled train (job 13)", "cancelled collate (job 14)",
                                      f"resume with: hsd submit resume {exp}"]
    assert (tmp_path / "scancelled").read_text() == "13 14\n"
    assert [e["state"] for e in load_book(exp)["jobs"]] == ["COMPLETED", "CANCELLED", "CANCELLED"]


# ---------------------------------------------------------------------------------------------
# hsd status --watch: refreshes until every job has ended (no real sleeping: the sleep is injected)
# ---------------------------------------------------------------------------------------------


def _watch_args(exp: Path, interval: float = 0.01):
    import argparse

    return argparse.Namespace(experiment_dir=str(exp), results_dir="results", watch=True, interval=interval)


def test_watch_of_a_finished_experiment_prints_once_and_returns(tmp_path: Path, capsys) -> None:
    from hsd.commands.status import main

    exp = tmp_path / "exp"
    _write_book(exp, [_entry("baseline", "COMPLETED", "exp/run"), _entry("train", "FAILED", "exp/t")])
    slept = []
    assert main(_watch_args(exp), sleep=slept.append) == 0
    out = capsys.readouterr().out
    assert slept == [] and out.count("STAGE") == 1 and "every job has ended" in out


def test_watch_refreshes_until_the_last_job_ends_and_ctrl_c_stops_it_cleanly(tmp_path: Path, capsys,
                                                                                monkeypatch) -> None:
    import jobs.status
    from hsd.commands.status import main

    exp = tmp_path / "exp"
    _write_book(exp, [_entry("baseline", "RUNNING", "exp/run")])
    states = iter(["PENDING", "RUNNING", "PREEMPTED", "COMPLETED"])  # a preempted job is requeued: keep watching
    monkeypatch.setattr(jobs.status, "collect",
                        lambda e: ({"command": "baseline", "executor": "slurm", "jobs": [{"stage": "baseline"}]},
                                   [("baseline", "12", next(states), "")]))
    slept = []
    assert main(_watch_args(exp, 2.5), sleep=slept.append) == 0
    out = capsys.readouterr().out
    assert slept == [2.5, 2.5, 2.5] and out.count("STAGE") == 4 and out.rstrip().endswith("every job has ended")

    def interrupted(_):
        raise KeyboardInterrupt
    monkeypatch.setattr(jobs.status, "collect", lambda e: ({"command": "b", "executor": "slurm", "jobs": [{}]},
                                                           [("baseline", "12", "RUNNING", "")]))
    assert main(_watch_args(exp), sleep=interrupted) == 0
    assert "stopped watching; the jobs go on" in capsys.readouterr().out


def test_watch_refuses_a_zero_interval(tmp_path: Path) -> None:
    from hsd.commands.status import main
    from hsd.errors import HsdError

    exp = tmp_path / "exp"
    _write_book(exp, [_entry("baseline", "RUNNING", "exp/run")])
    with pytest.raises(HsdError, match="--interval must be > 0"):
        main(_watch_args(exp, 0))
