"""Everyday mistakes with submitted experiments lose nothing: Ctrl-C or SIGTERM of ``hsd submit``,
``hsd cancel``, a moved experiment, a damaged ``jobs.json``, a misspelt LoRA target in a sweep.

The local executor runs real jobs (the tiny model, 4 samples, a 2-step training). An interrupted
experiment resumes to the records an uninterrupted run writes; a damaged one is refused with one
``error:`` line and left byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from _run_helpers import REPO, hsd_cmd, hsd_env, lines, merged_records, one_thread, wait_for, write_config
from hsd import cli
from hsd.config import load_config
from jobs import local

pytestmark = pytest.mark.faults
SAMPLES = 4


def _config(tmp: Path, model: Path, experiment: str, **sections) -> Path:
    """4 greedy samples, one per batch, 32 new tokens each: a validation stays mid-run long enough
    to be interrupted there; a 2-step training that checkpoints every step."""
    defaults = {
        "data": {"max_samples": SAMPLES}, "pipeline": {"baseline_template": "simple"},
        "inference": {"batch_size": 1, "max_new_tokens": 32},
        "train": {"max_train_samples": 16, "micro_batch_size": 4, "max_steps": 2, "save_every": 1, "eval_every": 100,
                  "gradient_checkpointing": False, "max_length": 256},
        "executor": {"kind": "local", "cpus_per_task": 1, "timeout_min": 20}}
    sections = {k: {**defaults.get(k, {}), **v} for k, v in sections.items()}
    return write_config(tmp, model, synthetic=6, name=f"{experiment}.yaml", experiment=experiment,
                        **{**defaults, **sections})


def _start(cmd: list[str], out: Path) -> subprocess.Popen:
    """``hsd`` as a terminal starts it: its own process group (the one Ctrl-C reaches), stdout and
    stderr apart."""
    return subprocess.Popen(cmd, env=hsd_env(), cwd=REPO, start_new_session=True,
                            stdout=open(out.with_suffix(".out"), "wb"), stderr=open(out.with_suffix(".err"), "wb"))


def _book(exp: Path) -> dict:
    return json.loads((exp / "jobs.json").read_text())


def _states(exp: Path) -> dict[str, str]:
    return {e["stage"]: e["state"] for e in _book(exp)["jobs"]}


def _entry(exp: Path, stage: str) -> dict:
    return next(e for e in _book(exp)["jobs"] if e["stage"] == stage)


def _group(process: dict) -> list[int]:
    """The pids of a job's process group now."""
    pids = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        fields = local._stat(int(name))
        if fields and fields[2] == str(process["pgid"]):
            pids.append(int(name))
    return pids


def _resume(exp: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(hsd_cmd("submit", "resume", str(exp)), env=hsd_env(), cwd=REPO, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def _labels(run_dir: Path) -> dict[str, tuple]:
    """What an interruption must not change, per sample id."""
    return {k: (r["predicted_label"], r["parse_status"], r["raw_response"]) for k, r in merged_records(run_dir).items()}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _hsd(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``hsd ARGV`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.integration
def test_ctrl_c_mid_baseline_stops_its_job_and_the_experiment_moved_elsewhere_resumes_to_the_uninterrupted_records(
        tmp_path, tiny_model_dir, capsys):
    cfg = _config(tmp_path, tiny_model_dir, "ctrlc")
    exp, log = tmp_path / "results" / "ctrlc", tmp_path / "submit"
    shard = exp / "baseline" / "shards" / "rank0.jsonl"
    proc = _start(hsd_cmd("submit", "baseline", "--config", str(cfg)), log)
    wait_for(lambda: lines(shard) >= 1, proc, log.with_suffix(".err"), timeout=600)
    job = _entry(exp, "baseline")
    members = _group(job["process"])
    os.kill(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C reaches: hsd submit only (the job has its own group)
    assert proc.wait(timeout=60) == 130
    err = log.with_suffix(".err").read_text()
    assert err.splitlines() == [f"interrupted: SIGINT; stopped baseline (job {job['job_id']}); not run: collate; "
                                f"resume with: hsd submit resume {exp}"], err
    assert len(members) >= 2 and not local.job_alive(job["process"])  # controller and task, both gone
    assert _states(exp) == {"baseline": "CANCELLED", "collate": "CANCELLED"}
    assert 1 <= lines(shard) < SAMPLES, "the baseline finished before the interruption"

    # jobs.json as hsd wrote it before (absolute paths), then the experiment moved: status and resume
    # work where it is now, and write nothing where it was
    book = _book(exp)
    book["experiment_dir"] = str(exp)
    for entry in book["jobs"]:
        entry.update({k: str(exp / entry[k]) for k in ("run_dir", "log") if k in entry})
    (exp / "jobs.json").write_text(json.dumps(book))
    moved = tmp_path / "moved" / "ctrlc"
    moved.parent.mkdir()
    shutil.move(exp, moved)
    code, out, err = _hsd(capsys, "status", str(moved))
    assert code == 0 and err == "", err  # was: ValueError: '/…/ctrlc' is not in the subpath of '/…/moved/ctrlc'
    assert out.splitlines()[0].startswith(f"experiment {moved} ")
    assert [line.split()[:3] for line in out.splitlines()[2:]] == [["baseline", job["job_id"], "CANCELLED"],
                                                                   ["collate", "-", "CANCELLED"]], out
    out = _resume(moved)
    assert "resuming baseline, collate" in out.stdout and not exp.exists()
    assert _states(moved) == {"baseline": "COMPLETED", "collate": "COMPLETED"}
    assert {e["run_dir"] for e in _book(moved)["jobs"]} == {"baseline", "."}  # relative from now on
    assert json.loads((moved / "baseline" / "manifest.json").read_text())["attempt"] == 2  # resumed, not redone
    with one_thread():
        from hsd.recipes.validate import run

        reference = run(load_config(moved / "baseline" / "config.yaml"), tmp_path / "uninterrupted")
    assert _labels(moved / "baseline") == _labels(reference) and len(_labels(reference)) == SAMPLES


@pytest.mark.integration
def test_sigterm_mid_training_stops_every_process_and_resume_equals_an_uninterrupted_pipeline(
        tmp_path, tiny_model_dir, monkeypatch):
    cfg = _config(tmp_path, tiny_model_dir, "term", pipeline={"run_baseline": False})
    exp, log = tmp_path / "results" / "term", tmp_path / "submit"
    proc = _start(hsd_cmd("submit", "pipeline", "--config", str(cfg)), log)
    first = exp / "train" / "checkpoints" / "step_0000001" / "COMPLETE"
    wait_for(first.exists, proc, log.with_suffix(".err"), timeout=900, poll=0.01)
    train = _entry(exp, "train")
    members = _group(train["process"])
    os.kill(proc.pid, signal.SIGTERM)  # `timeout`, `kill`: the training must not run on after hsd submit
    assert proc.wait(timeout=60) == 143
    assert log.with_suffix(".err").read_text().splitlines()[-1] == (
        f"interrupted: SIGTERM; stopped train (job {train['job_id']}); not run: finetuned, collate; "
        f"resume with: hsd submit resume {exp}")
    assert len(members) >= 2 and not [p for p in members if local.alive(p, None)]
    assert _states(exp) == {"ftdata": "COMPLETED", "train": "CANCELLED", "finetuned": "CANCELLED",
                            "collate": "CANCELLED"}
    assert not (exp / "train" / "adapter").exists(), "the training finished before the interruption"

    _resume(exp)
    assert set(_states(exp).values()) == {"COMPLETED"}
    assert json.loads((exp / "train" / "manifest.json").read_text())["resumed_at"][-1] >= 1  # from its checkpoint
    # The same training and validation jobs, never interrupted, in this process (the fine-tuning
    # data is the same file: it is written from the seeded split alone).
    from jobs.plans import pipeline_plan

    ref = tmp_path / "uninterrupted"
    shutil.copytree(exp / "ftdata", ref / "ftdata")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", hsd_env()["TORCH_EXTENSIONS_DIR"])
    jobs = {s.name: s.jobs[0] for s in pipeline_plan(load_config(cfg), ref)}
    with one_thread():
        jobs["train"]()
        jobs["finetuned"]()
    assert _labels(exp / "finetuned") == _labels(ref / "finetuned") and len(_labels(ref / "finetuned")) == SAMPLES


@pytest.mark.integration
def test_hsd_cancel_stops_a_running_local_experiment_and_a_second_cancel_changes_nothing(
        tmp_path, tiny_model_dir, capsys):
    cfg = _config(tmp_path, tiny_model_dir, "cancel")
    exp, log = tmp_path / "results" / "cancel", tmp_path / "submit"
    proc = _start(hsd_cmd("submit", "baseline", "--config", str(cfg)), log)
    wait_for(lambda: (exp / "baseline" / "manifest.json").exists(), proc, log.with_suffix(".err"), timeout=600)
    job = _entry(exp, "baseline")
    code, out, err = _hsd(capsys, "cancel", str(exp))
    assert code == 0 and err == "", err
    assert out.splitlines() == [f"stopped hsd submit (pid {proc.pid}): it cancelled its jobs and recorded them "
                                f"(hsd status {exp})", f"resume with: hsd submit resume {exp}"]
    assert proc.wait(timeout=5) == 143 and not local.job_alive(job["process"])
    assert _states(exp) == {"baseline": "CANCELLED", "collate": "CANCELLED"}
    before = _tree(exp)
    code, out, _ = _hsd(capsys, "cancel", str(exp))
    assert code == 0 and out == f"nothing to cancel: every job of {exp} has ended (2 CANCELLED)\n"
    assert _tree(exp) == before


@pytest.mark.parametrize("damage, problem", [
    (lambda b: b[: len(b) // 2], "is not valid JSON"),  # cut off (a full disk, an interrupted copy)
    (lambda b: b"[]", r"is not a job book hsd can read \(a JSON list instead of an object\)"),
    (lambda b: b.replace(b'"baseline"', b'"baseline\xe9"', 1), r"is not UTF-8 text \(byte \d+\)"),
])
def test_a_damaged_jobs_json_is_one_error_line_and_nothing_changes(tmp_path, capsys, damage, problem):
    exp = tmp_path / "results" / "e"
    (exp / "baseline" / "shards").mkdir(parents=True)
    (exp / "baseline" / "shards" / "rank0.jsonl").write_text('{"sample_id": "a"}\n')
    (exp / "config.yaml").write_text(yaml.safe_dump({"experiment": "e", "results_dir": str(tmp_path / "results")}))
    book = {"experiment_dir": ".", "command": "baseline", "executor": "local", "submitted": "2026-01-01T00:00:00",
            "jobs": [{"stage": "baseline", "step": "baseline", "index": 0, "kind": "validate", "job_id": "-",
                      "run_dir": "baseline", "state": "PENDING", "after": [], "error": None, "attempts": []}]}
    (exp / "jobs.json").write_bytes(damage(json.dumps(book, indent=1).encode()))
    before = _tree(exp)
    for argv in (["status", str(exp)], ["submit", "resume", str(exp)], ["cancel", str(exp)]):
        code, out, err = _hsd(capsys, *argv)
        assert code == 2 and out == "", (argv, out)
        assert len(err.splitlines()) == 1 and err.startswith(f"error: {exp / 'jobs.json'} "), (argv, err)
        assert re.search(problem, err) and "restore" in err and "submit the experiment again" in err
        assert _tree(exp) == before, argv


@pytest.mark.integration
@pytest.mark.parametrize("command, override, where", [
    ("sweep", "sweep.lora=[{r: 4}, {r: 8, target_modules: [qq_proj]}]", "sweep.lora[1]"),
    ("sweep", "sweep.lora=[{r: 4}, {r: 8, target_modules: [q_proj, qq_proj]}]", "sweep.lora[1]"),  # peft alone
    ("pipeline", "train.lora.target_modules=[qq_proj]", "train"),                                 # trains q_proj
])
def test_a_lora_target_the_model_lacks_is_refused_before_any_job_starts(tmp_path, tiny_model_dir, capsys, command,
                                                                         override, where):
    cfg = _config(tmp_path, tiny_model_dir, "typo")
    code, out, err = _hsd(capsys, "submit", command, "--config", str(cfg), override)
    (line,) = err.splitlines()
    assert code == 2 and line.startswith(f"error: {where}: train.lora.target_modules: ['qq_proj'] name no module "
                                         "of the model; its linear modules are ["), err
    assert "'q_proj'" in line.split("its linear modules are")[1], err
    assert not (tmp_path / "results").exists()  # no experiment, no run directory, nothing started
