"""The job suite without Slurm: the local executor (real processes) and the debug executor.

The pipeline runs stage after stage, each waited for; a validation with two tasks runs two
ranks set up by submitit; a failing stage stops the chain with one clear error, and
``hsd status`` reports what happened.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hsd.config import Config, ConfigError, load_config
from jobs.executor import SubmitError
from jobs.pipeline import StagesFailed, submit_command

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def _config(results: Path, model: Path, experiment: str, *overrides: str) -> Config:
    if not (SHARED_DATA / "canned" / "canned_50_quick.json").is_file():
        pytest.skip(f"prepared data not found at {SHARED_DATA}")
    return load_config(None, [
        f"experiment={experiment}", f"results_dir={results}", f"model.name_or_path={model}",
        f"data.dir={SHARED_DATA}", "data.subset=canned_50_quick", "data.max_samples=6",
        "prompt.template=simple", "pipeline.baseline_template=simple",
        "inference.batch_size=6", "inference.max_new_tokens=4", "inference.progress=false",
        "train.max_train_samples=16", "train.holdout_fraction=0.02", "train.micro_batch_size=4",
        "train.max_steps=2", "train.eval_every=2", "train.save_every=2", "train.max_length=256",
        "executor.kind=local", "executor.cpus_per_task=1", "executor.timeout_min=20", *overrides,
    ])


def _status(exp: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "hsd.cli", "status", str(exp)], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # job processes inherit it


def test_local_pipeline_with_a_failed_training_compares_what_finished_then_resume_completes_it(
        tmp_path: Path, tiny_model_dir: Path, one_thread, capsys: pytest.CaptureFixture) -> None:
    cfg = _config(tmp_path, tiny_model_dir, "pipe")
    exp = tmp_path / "pipe"
    exp.mkdir()
    (exp / "train").write_text("in the way")  # the training's run directory cannot be created: it fails
    with pytest.raises(StagesFailed, match=r"stage 'train' \(job \S+\) failed: \S+Error: .*/pipe/train.*"
                                           r"hsd submit resume"):
        submit_command("pipeline", cfg)
    book = json.loads((exp / "jobs.json").read_text())
    assert [(e["stage"], e["state"]) for e in book["jobs"]] == [
        ("baseline", "COMPLETED"), ("ftdata", "COMPLETED"), ("train", "FAILED"), ("finetuned", "CANCELLED"),
        ("collate", "COMPLETED")]  # collate ran although a stage failed
    comp = json.loads((exp / "comparison" / "comparison.json").read_text())
    assert [r["info"]["name"] for r in comp["runs"]] == ["baseline"]
    unfinished = {u["stage"]: u for u in comp["unfinished"]}
    assert unfinished["train"]["state"] == "FAILED" and "/pipe/train" in unfinished["train"]["error"]
    assert unfinished["finetuned"]["error"] == "not run: stage train failed"
    assert "Stages that did not finish" in (exp / "comparison" / "report.md").read_text()
    baseline_job = book["jobs"][0]["job_id"]
    capsys.readouterr()

    (exp / "train").unlink()  # the cause fixed: resume runs only what did not complete
    out = subprocess.run([sys.executable, "-m", "hsd.cli", "submit", "resume", str(exp)], capture_output=True,
                         text=True, cwd=REPO, timeout=900)
    assert out.returncode == 0, out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines() if "running" in line] == [
        "train", "finetuned", "collate"], out.stdout
    table = out.stdout.splitlines()
    assert table[-1] == str(exp) and table[-2] == f"report: {exp / 'comparison' / 'report.html'}"
    header = next(i for i, line in enumerate(table) if line.startswith("run "))
    assert [line.split()[0] for line in table[header + 1:header + 4]] == ["baseline", "finetuned", "tfidf_logreg"]
    assert re.search(r"^finetuned\s+fine-tuned\s+\S+%\s+\S+\s+\S+\s+(MET|NOT MET|cannot be judged)", table[header + 2])
    book = json.loads((exp / "jobs.json").read_text())
    assert [(e["stage"], e["state"], len(e["attempts"])) for e in book["jobs"]] == [
        ("baseline", "COMPLETED", 0), ("ftdata", "COMPLETED", 0), ("train", "COMPLETED", 1),
        ("finetuned", "COMPLETED", 1), ("collate", "COMPLETED", 1)]
    assert book["jobs"][0]["job_id"] == baseline_job  # the baseline was reused, not rerun
    assert (exp / "train" / "adapter" / "adapter_config.json").exists()
    tuned = load_config(exp / "finetuned" / "config.yaml")
    assert tuned.model.adapter == str(exp / "train" / "adapter") and tuned.prompt.template == "simple"
    comp = json.loads((exp / "comparison" / "comparison.json").read_text())
    assert [r["info"]["name"] for r in comp["runs"]] == ["baseline", "finetuned"] and comp["unfinished"] == []
    assert all(p.parent == exp / "submitit" for p in exp.rglob("*_log.out"))  # logs live with the results
    status = _status(exp)
    assert len(re.findall(r"\sCOMPLETED\s+\d", status)) == 5, status
    assert re.search(r"^train\s+\S+\s+COMPLETED\s+2 ", status, flags=re.M), status
    assert "train attempt 2 (1: " in status and "FAILED)" in status, status


def test_local_executor_runs_one_rank_per_task(tmp_path: Path, tiny_model_dir: Path, one_thread) -> None:
    from jobs.executor import make_executor, submit
    from jobs.validate_job import ValidateJob
    from hsd.config import to_dict

    cfg = _config(tmp_path, tiny_model_dir, "ranks", "executor.tasks_per_node=2", "inference.batch_size=2")
    run = tmp_path / "ranks" / "val"
    job = submit(make_executor(cfg.executor, tmp_path / "ranks", "val"),
                 [ValidateJob(to_dict(cfg), run_dir=str(run))], "val")[0]
    job.results()  # one result per task
    shards = sorted(p.name for p in (run / "shards").glob("rank*.jsonl"))
    assert shards == ["rank0.jsonl", "rank1.jsonl"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["samples"] == 6
    assert set(manifest["per_rank"].values()) == {3}


def test_a_failed_baseline_is_one_clear_error_and_collate_says_nothing_finished(tmp_path: Path,
                                                                                  tiny_model_dir: Path) -> None:
    cfg = _config(tmp_path, tiny_model_dir, "broken", "executor.kind=debug")
    exp = tmp_path / "broken"
    exp.mkdir()
    (exp / "baseline").write_text("in the way")
    with pytest.raises(SubmitError, match=r"stage 'baseline' \(job \S+\) failed: RunError: .*/broken/baseline"):
        submit_command("baseline", cfg)
    states = {e["stage"]: (e["state"], e["error"]) for e in json.loads((exp / "jobs.json").read_text())["jobs"]}
    assert states["baseline"][0] == "FAILED"
    assert states["collate"][0] == "FAILED" and "no validation run of" in states["collate"][1], states
    status = _status(exp)
    assert "RunError: " in status and str(exp / "baseline") in status and "no validation run of" in status, status


def test_a_model_that_does_not_exist_is_refused_before_anything_runs(tmp_path: Path) -> None:
    cfg = load_config(None, [f"results_dir={tmp_path}", "experiment=e", "executor.kind=debug",
                             f"model.name_or_path={tmp_path / 'no-model'}"])
    with pytest.raises(ConfigError, match=r"^baseline: model directory not found: .*no-model"):
        submit_command("baseline", cfg)
    assert not (tmp_path / "e").exists()


def test_the_shipped_sweep_trains_every_entry_on_the_tiny_model(tmp_path: Path, tiny_model_dir: Path,
                                                                 one_thread) -> None:
    """jobs/configs/sweep_4xa100.yaml with tiny overrides only: every entry (expert LoRA too) trains,
    is validated, and the comparison ends the command's output as a table."""
    tiny = ["model.dtype=float32", "data.max_samples=8", "inference.batch_size=8", "inference.max_new_tokens=8",
            "inference.progress=false", "train.max_train_samples=16", "train.holdout_fraction=0.02",
            "train.micro_batch_size=4", "train.max_steps=2", "train.eval_every=2", "train.save_every=2",
            "train.max_length=256", "executor.kind=local", "executor.gpus_per_node=0", "executor.cpus_per_task=1",
            "executor.mem_gb=4", "executor.timeout_min=30"]
    out = subprocess.run([sys.executable, "-m", "hsd.cli", "submit", "sweep", "--config",
                          "jobs/configs/sweep_4xa100.yaml", f"results_dir={tmp_path}",
                          f"model.name_or_path={tiny_model_dir}", f"data.dir={SHARED_DATA}", *tiny],
                         capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    exp = tmp_path / "gptoss20b_lora_sweep"
    assert out.stdout.splitlines()[-1] == str(exp)
    for i, r in enumerate([8, 16, 32, 32]):
        adapter = json.loads((exp / f"train_0{i}" / "adapter" / "adapter_config.json").read_text())
        assert adapter["r"] == r
    assert adapter["target_parameters"] == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    comp = json.loads((exp / "comparison" / "comparison.json").read_text())
    names = ["baseline"] + [f"finetuned_0{i}" for i in range(4)]
    assert [r["info"]["name"] for r in comp["runs"]] == names and comp["unfinished"] == []
    table = out.stdout.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("run "))
    assert [line.split()[0] for line in table[header + 1:header + 7]] == names + ["tfidf_logreg"]
    assert table[-2] == f"report: {exp / 'comparison' / 'report.html'}"
