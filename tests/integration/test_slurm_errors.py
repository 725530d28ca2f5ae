"""On the project's real Slurm: each way a submission goes wrong ends in one clear message.

A partition the cluster lacks is refused before anything is submitted; a job that fails and
the job waiting on it (a dependency that can never be satisfied) both end — no hang — and
``hsd status`` says which failed, why, and which never ran because of it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _slurm_helpers import REPO, require_slurm, status_text, tiny_config, wait_finished
from jobs.pipeline import submit_command

pytestmark = [pytest.mark.slurm, pytest.mark.integration]


def test_a_missing_partition_is_refused_naming_the_ones_that_exist(tmp_path: Path) -> None:
    require_slurm()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"results_dir": str(tmp_path / "results"),
                                   "executor": {"kind": "slurm", "partition": "gpu-a100"}}))
    out = subprocess.run([sys.executable, "-m", "hsd.cli", "submit", "pipeline", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "executor.partition 'gpu-a100' does not exist" in lines[0] and "debug*" in lines[0] and "high" in lines[0]
    assert not (tmp_path / "results").exists()  # refused before anything was written or submitted


@pytest.mark.parametrize("override, message", [
    ("executor.mem_gb=100000", r"executor.mem_gb=100000 but the largest node of the default partition has \d+ GB"),
    ("executor.cpu_stage.cpus_per_task=64", r"executor.cpu_stage: 64 CPUs per node requested but the largest node"),
    ("executor.gpus_per_node=1", r"executor.gpus_per_node=1 but the nodes of the default partition have at most 0"),
    ("executor.nodes=3", r"executor.nodes=3 but the default partition has 2 node\(s\) \(sinfo\)"),
])
def test_resources_no_node_has_are_refused_before_anything_is_queued(tmp_path: Path, tiny_model_dir: Path,
                                                                     override: str, message: str) -> None:
    from hsd.config import ConfigError

    require_slurm()
    with pytest.raises(ConfigError, match=message):
        submit_command("pipeline", tiny_config(tmp_path, tiny_model_dir, "big", override))
    assert not (tmp_path / "big").exists()


def test_a_failed_job_and_the_dependent_that_can_never_run_each_say_so(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_slurm()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = tiny_config(tmp_path, tiny_model_dir, "broken", "pipeline.run_baseline=false")
    exp = tmp_path / "broken"
    exp.mkdir()
    (exp / "ftdata").write_text("in the way")  # ftdata cannot write its directory: it fails
    exp = submit_command("pipeline", cfg)  # ftdata -> train -> finetuned, then collate after any outcome
    rows = wait_finished(exp, timeout=300)  # a dependent pending forever would time out here
    assert rows["ftdata"]["state"] == "FAILED"
    # Never ran: sacct has no start, or (Slurm 22.05, cancelled while pending) start == end.
    for stage in ("train", "finetuned"):
        assert rows[stage]["state"] == "CANCELLED" and rows[stage]["start"] in (None, rows[stage]["end"]), rows
    assert rows["collate"]["state"] == "FAILED", rows  # it ran (afterany) and found nothing finished
    status = status_text(exp)
    lines = {line.split()[0]: line for line in status.splitlines()[2:]}
    assert "FAILED" in lines["ftdata"] and "ftdata" in lines["ftdata"] and "Error" in lines["ftdata"], status
    assert "CANCELLED" in lines["train"] and "never ran: ftdata did not complete" in lines["train"], status
    assert "no validation run of" in lines["collate"], status
