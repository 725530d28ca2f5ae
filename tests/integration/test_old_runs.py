"""Run directories written before the run lifecycle was rebuilt still read, resume and collate.

``tests/fixtures/runs_3bc6d1b/`` was written by hsd at commit 3bc6d1b (2026-12-05, before
``hsd.rundir``): ``complete/`` is a finished validation of 8 test samples (manifest status
``complete``), ``interrupted/`` the same config SIGKILLed after 3 records (status ``running``,
no merged files). Only the absolute paths in their ``config.yaml`` are those of the machine that
wrote them; the test maps them onto this one, as a user who moved a results folder would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hsd.cli import main
from hsd.config import load_config
from hsd.prompt_files import prompt_hash
from hsd.recipes.validate import run

pytestmark = pytest.mark.integration
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runs_3bc6d1b"
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
WRITTEN_WITH = {"model": "/work/main/.cache/tests/tiny-model-v3-seed0", "data": "/work/shared/data",
                "results": "/tmp/oldruns/results"}
COMPARED = ("sample_id", "predicted_label", "raw_response", "parse_status", "prompt_hash", "true_label")


@pytest.fixture
def old_experiment(tmp_path, tiny_model_dir) -> Path:
    if not (SHARED_DATA / "unified").is_dir():
        pytest.skip(f"the test split is read from {SHARED_DATA} (../shared/data)")
    exp = tmp_path / "results" / "old"
    shutil.copytree(FIXTURE, exp, ignore=shutil.ignore_patterns("submitted_config.yaml"))
    here = {"model": str(tiny_model_dir), "data": str(SHARED_DATA), "results": str(tmp_path / "results")}
    for config in exp.glob("*/config.yaml"):
        text = config.read_text(encoding="utf-8")
        for key, old in WRITTEN_WITH.items():
            text = text.replace(old, here[key])
        config.write_text(text, encoding="utf-8")
    return exp


def _records(run_dir: Path) -> dict[str, tuple]:
    (merged,) = run_dir.glob("intermediate_results_*.jsonl")
    rows = [json.loads(line) for line in merged.read_text(encoding="utf-8").splitlines()]
    return {r["sample_id"]: tuple(r[k] for k in COMPARED) for r in rows}


def test_an_old_interrupted_run_resumes_to_the_old_complete_runs_records(old_experiment, capsys):
    interrupted, complete = old_experiment / "interrupted", old_experiment / "complete"
    shard = interrupted / "shards" / "rank0.jsonl"
    kept = shard.read_bytes()
    old_ids = [json.loads(line)["sample_id"] for line in kept.decode().splitlines()]
    run(load_config(interrupted / "config.yaml"), interrupted)
    manifest = json.loads((interrupted / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETED" and manifest["attempt"] == 2 and manifest["resumed"] == 3
    assert manifest["ts"] == "20261205_130630", "the first attempt's file-name timestamp is kept"
    assert shard.read_bytes().startswith(kept), "the old records were rewritten"
    assert _records(interrupted) == _records(complete)
    _show_old_and_new_records(interrupted, old_ids, _records(complete), capsys)


def _show_old_and_new_records(run_dir: Path, old_ids: list[str], complete: dict, capsys) -> None:
    """`hsd show`: the 3 old records hold no prompt (it says so, shows their answers, and renders the
    prompt again with --render); the 5 resumed ones do, and their stored prompts hash to the old run's
    prompt_hash (the same prompts)."""
    new_ids = sorted(set(complete) - set(old_ids))
    assert len(old_ids) == 3 and len(new_ids) == 5
    assert main(["show", str(run_dir), old_ids[0]]) == 2
    assert "recorded by an older hsd" in capsys.readouterr().err
    assert main(["show", str(run_dir), old_ids[0], "--answer-only"]) == 0
    assert "predicted label" in capsys.readouterr().out
    for sid in new_ids:
        assert main(["show", str(run_dir), sid, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert prompt_hash(shown["prompt"]) == complete[sid][COMPARED.index("prompt_hash")]
    # --render: an old record's prompt rendered again from config.yaml, shown only when its hash is the record's
    assert main(["show", str(run_dir), old_ids[0], "--render", "--json"]) == 0
    rendered = json.loads(capsys.readouterr().out)["prompt"]
    assert prompt_hash(rendered) == complete[old_ids[0]][COMPARED.index("prompt_hash")]
    assert rendered.startswith("<|start|>system<|message|>") and rendered.endswith("<|start|>assistant")
    (merged,) = run_dir.glob("intermediate_results_*.jsonl")
    merged.write_text(merged.read_text(encoding="utf-8").replace(complete[old_ids[0]][COMPARED.index("prompt_hash")],
                                                                 "0123456789abcdef"), encoding="utf-8")
    assert main(["show", str(run_dir), old_ids[0], "--render"]) == 2
    assert "not the record's prompt_hash 0123456789abcdef" in capsys.readouterr().err


def test_an_old_complete_run_is_left_as_it_is_and_the_experiment_collates(old_experiment, capsys):
    complete = old_experiment / "complete"
    before = {p: p.read_bytes() for p in complete.rglob("*") if p.is_file() and p.name != ".lock"}
    assert run(load_config(complete / "config.yaml"), complete) == complete  # "complete" reads as COMPLETED
    assert {p: p.read_bytes() for p in complete.rglob("*") if p.is_file() and p.name != ".lock"} == before
    run(load_config(old_experiment / "interrupted" / "config.yaml"), old_experiment / "interrupted")
    assert main(["collate", str(old_experiment), "--data-dir", str(SHARED_DATA)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(complete / "report.html") in printed and (old_experiment / "comparison" / "report.html").is_file()
    assert json.loads((complete / "metrics_full.json").read_text())["run"]["n_records"] == 8
