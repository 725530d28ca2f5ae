"""On the project's real Slurm: the tiny-model pipeline (its validations and training on two
nodes, ``executor.nodes=2``; ftdata and collate on one) and a 2-setting sweep (one node).

Both are submitted at once (the submit command returns at once) and run side by side; the
tests then read sacct's start/end times to check that every job started only after the jobs
it depends on had ended, and that the sweep's training ran as one real job array.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from _slurm_helpers import require_slurm, status_text, tiny_config, wait_finished
from jobs.pipeline import submit_command

pytestmark = [pytest.mark.slurm, pytest.mark.integration]


@pytest.fixture(scope="module")
def submitted(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    require_slurm()
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    results = tmp_path_factory.mktemp("slurm-pipeline")
    try:
        start = time.monotonic()
        pipeline = submit_command("pipeline", tiny_config(results, tiny_model_dir, "pipe", "executor.nodes=2"))
        sweep = submit_command("sweep", tiny_config(
            results, tiny_model_dir, "sweep", "pipeline.run_baseline=false",
            "sweep.lora=[{r: 4, alpha: 8}, {r: 8, alpha: 16}]"))
        assert time.monotonic() - start < 30, "submitting must not wait for the jobs"
    finally:
        mp.undo()
    return {"pipeline": pipeline, "sweep": sweep}


def test_status_shows_a_running_validation_and_the_jobs_waiting_for_it(submitted: dict[str, Path]) -> None:
    exp = submitted["pipeline"]
    seen = ""

    def running_with_progress() -> bool:
        nonlocal seen
        seen = status_text(exp)
        lines = {line.split()[0]: line for line in seen.splitlines()[2:] if line.strip()}
        # each rank of the 2-node job with its node and its share of the 6 samples
        return (re.search(r"RUNNING\s+1\s+rank0@hsdn\d \d/3 rank1@hsdn\d \d/3 \(\d/6 samples\)",
                          lines.get("baseline", "")) is not None
                and "waiting: Dependency" in lines.get("collate", ""))

    deadline = time.monotonic() + 120
    while not running_with_progress():
        assert time.monotonic() < deadline, f"never saw the baseline running with progress:\n{seen}"
        time.sleep(0.5)


def test_pipeline_runs_every_stage_after_its_dependencies(submitted: dict[str, Path]) -> None:
    exp = submitted["pipeline"]
    rows = wait_finished(exp, timeout=420)
    assert {s: r["state"] for s, r in rows.items()} == dict.fromkeys(
        ["baseline", "ftdata", "train", "finetuned", "collate"], "COMPLETED"), status_text(exp)
    assert rows["train"]["start"] >= rows["ftdata"]["end"]
    assert rows["finetuned"]["start"] >= rows["train"]["end"]
    assert rows["collate"]["start"] >= max(rows["baseline"]["end"], rows["finetuned"]["end"])
    assert (exp / "train" / "adapter" / "adapter_config.json").exists()
    tuned = (exp / "finetuned" / "config.yaml").read_text()
    assert str(exp / "train" / "adapter") in tuned
    assert (exp / "comparison").is_dir(), "collate wrote no comparison"
    status = status_text(exp)
    assert status.count("COMPLETED") == 5, status
    nodes = {stage: _nodes(e) for stage, e in _ids(exp).items()}
    assert nodes == {"baseline": "hsdn[1-2]", "ftdata": nodes["ftdata"], "train": "hsdn[1-2]",
                     "finetuned": "hsdn[1-2]", "collate": nodes["collate"]}, nodes
    assert nodes["ftdata"] in {"hsdn1", "hsdn2"} and nodes["collate"] in {"hsdn1", "hsdn2"}  # CPU stages: one node
    manifest = json.loads((exp / "finetuned" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["slurm"]["SLURM_JOB_NODELIST"] == "hsdn[1-2]", manifest


def _ids(exp: Path) -> dict[str, str]:
    return {e["stage"]: e["job_id"] for e in json.loads((exp / "jobs.json").read_text())["jobs"]}


def _nodes(job_id: str) -> str:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "NodeList", "-j", job_id], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    return out[-1] if out else ""


def test_sweep_trains_as_one_array_each_validated_after_its_own_training(submitted: dict[str, Path]) -> None:
    exp = submitted["sweep"]
    rows = wait_finished(exp, timeout=420)
    assert all(r["state"] == "COMPLETED" for r in rows.values()), status_text(exp)
    jobs = {e["stage"]: e["job_id"] for e in json.loads((exp / "jobs.json").read_text())["jobs"]}
    array = {jobs["train[0]"].split("_")[0], jobs["train[1]"].split("_")[0]}
    assert len(array) == 1 and jobs["train[0]"].endswith("_0") and jobs["train[1]"].endswith("_1"), jobs
    for i in range(2):
        assert rows[f"train[{i}]"]["start"] >= rows["ftdata"]["end"]
        assert rows[f"finetuned[{i}]"]["start"] >= rows[f"train[{i}]"]["end"]
        assert rows["collate"]["start"] >= rows[f"finetuned[{i}]"]["end"]
        adapter = json.loads((exp / f"train_0{i}" / "adapter" / "adapter_config.json").read_text())
        assert adapter["r"] == [4, 8][i]
