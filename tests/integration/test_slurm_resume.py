"""On the project's real Slurm: a pipeline whose training fails still gets a comparison of what
finished, and ``hsd submit resume`` then completes it without running the baseline again."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from _slurm_helpers import REPO, book, job_ids, require_slurm, status_text, tiny_config, wait_finished
from jobs.pipeline import submit_command

pytestmark = [pytest.mark.slurm, pytest.mark.integration]


def test_a_failed_training_gets_a_partial_comparison_then_resume_completes_it(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_slurm()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    exp = tmp_path / "resume"
    exp.mkdir()
    (exp / "train").write_text("in the way")  # the training cannot create its run directory: it fails
    exp = submit_command("pipeline", tiny_config(tmp_path, tiny_model_dir, "resume"))
    rows = wait_finished(exp, timeout=600)
    assert {s: r["state"] for s, r in rows.items()} == {
        "baseline": "COMPLETED", "ftdata": "COMPLETED", "train": "FAILED", "finetuned": "CANCELLED",
        "collate": "COMPLETED"}, status_text(exp)
    assert rows["collate"]["start"] >= rows["baseline"]["end"]
    comp = json.loads((exp / "comparison" / "comparison.json").read_text())
    assert [r["info"]["name"] for r in comp["runs"]] == ["baseline"]
    unfinished = {u["stage"]: u for u in comp["unfinished"]}
    assert unfinished["train"]["state"] == "FAILED" and "is a file, not a run directory" in unfinished["train"]["error"], unfinished
    assert unfinished["finetuned"]["state"] == "CANCELLED"
    first = job_ids(exp)

    (exp / "train").unlink()
    out = subprocess.run([str(REPO / ".venv" / "bin" / "hsd"), "submit", "resume", str(exp)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == str(exp)
    rows = wait_finished(exp, timeout=600)
    assert all(r["state"] == "COMPLETED" for r in rows.values()), status_text(exp)
    again = job_ids(exp)
    assert again["baseline"] == first["baseline"] and again["ftdata"] == first["ftdata"]  # reused, not rerun
    assert all(again[s] != first[s] for s in ("train", "finetuned", "collate"))
    assert rows["finetuned"]["start"] >= rows["train"]["end"] and rows["collate"]["start"] >= rows["finetuned"]["end"]
    entries = {e["stage"]: e for e in book(exp)["jobs"]}
    assert entries["train"]["attempts"] == [{"job_id": first["train"], "state": "FAILED",
                                             "error": entries["train"]["attempts"][0]["error"]}]
    comp = json.loads((exp / "comparison" / "comparison.json").read_text())
    assert [r["info"]["name"] for r in comp["runs"]] == ["baseline", "finetuned"] and comp["unfinished"] == []
    assert (exp / "train" / "adapter" / "adapter_config.json").exists()
    status = status_text(exp)
    assert re.search(r"^train\s+\S+\s+COMPLETED\s+2 ", status, flags=re.M), status
    assert f"train attempt 2 (1: {first['train']} FAILED)" in status, status
