"""The job suite without Slurm: the local executor (real processes) and the debug executor.

The pipeline runs stage after stage, each waited for; a validation with two tasks runs two
ranks set up by submitit; a failing stage stops the chain with one clear error, and
``hsd status`` reports what happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hsd.config import Config, load_config
from jobs.executor import SubmitError
from jobs.pipeline import submit_command

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


def test_local_pipeline_runs_every_stage_in_order(tmp_path: Path, tiny_model_dir: Path, one_thread,
                                                  capsys: pytest.CaptureFixture) -> None:
    exp = submit_command("pipeline", _config(tmp_path, tiny_model_dir, "pipe"))
    book = json.loads((exp / "jobs.json").read_text())
    assert [(e["stage"], e["state"]) for e in book["jobs"]] == [
        (s, "COMPLETED") for s in ("baseline", "ftdata", "train", "finetuned", "collate")]
    printed = capsys.readouterr().out
    assert [line.split()[0] for line in printed.splitlines() if "running" in line] == [
        "baseline", "ftdata", "train", "finetuned", "collate"]
    assert (exp / "train" / "adapter" / "adapter_config.json").exists()
    tuned = load_config(exp / "finetuned" / "config.yaml")
    assert tuned.model.adapter == str(exp / "train" / "adapter") and tuned.prompt.template == "simple"
    assert list((exp / "finetuned").glob("intermediate_results_*.jsonl"))
    assert (exp / "comparison").is_dir()
    assert all(p.parent == exp / "submitit" for p in exp.rglob("*_log.out"))  # logs live with the results
    status = _status(exp)
    assert status.count("COMPLETED") == 5, status


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


def test_a_failing_stage_stops_the_chain_with_one_clear_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = _config(tmp_path, tiny_model_dir, "broken", "executor.kind=debug",
                  f"model.name_or_path={tmp_path / 'no-model'}")
    with pytest.raises(SubmitError, match=r"stage 'baseline' \(job \S+\) failed: ModelError: model directory not found"):
        submit_command("baseline", cfg)
    exp = tmp_path / "broken"
    states = {e["stage"]: (e["state"], e["error"]) for e in json.loads((exp / "jobs.json").read_text())["jobs"]}
    assert states["baseline"][0] == "FAILED" and states["collate"] == ("CANCELLED", "not run: stage baseline failed")
    status = _status(exp)
    assert "ModelError" in status and "not run: stage baseline failed" in status, status
