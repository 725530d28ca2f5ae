"""The shipped seed configs reproduce the old pipeline's runs: ``hsd validate --config
configs/seed_baseline.yaml`` (on the tiny model, a few samples) reads the old template file from
``../shared/reference``, evaluates the validation split with its empty row skipped and counted, and
writes every file the old pipeline wrote, plus ``BASELINE_METRICS.txt``."""

from __future__ import annotations

import json
import logging

import pytest

from _run_helpers import REPO, SHARED_DATA, one_thread
from hsd.cli import main
from hsd.config import load_config

pytestmark = pytest.mark.integration
REFERENCE = REPO.parent / "shared" / "reference"
OLD_FILES = ("performance_metrics_{ts}.csv", "bias_metrics_{ts}.csv", "strategy_unified_results_{ts}.csv",
             "evaluation_report_{ts}.txt", "intermediate_results_{ts}.jsonl")


def test_seed_configs_hold_the_old_settings(monkeypatch):
    monkeypatch.chdir(REPO)  # the template paths are read from the checkout's root
    base, post = load_config("configs/seed_baseline.yaml"), load_config("configs/seed_postft.yaml")
    for cfg in (base, post):
        assert (cfg.data.split, cfg.data.max_samples, cfg.data.empty_text) == ("val", "all", "skip")
        assert cfg.model.name_or_path == "openai/gpt-oss-20b" and cfg.model.adapter is None
        assert (cfg.inference.batch_size, cfg.executor.gpus_per_node) == (4, 4)
    assert (base.prompt.template, base.prompt.strategy) == ("../shared/reference/combined_gptoss_v1.json",
                                                             "combined_optimized")
    assert (post.prompt.template, post.prompt.strategy) == ("../shared/reference/baseline_v1.json", "baseline_standard")
    assert (post.pipeline.finetuned_template, post.pipeline.finetuned_strategy) == (post.prompt.template,
                                                                                    post.prompt.strategy)
    for cfg in (base, post):  # hsd submit baseline / pipeline read the baseline's prompt from pipeline.*
        assert (cfg.pipeline.baseline_template, cfg.pipeline.baseline_strategy) == (base.prompt.template,
                                                                                    base.prompt.strategy)
    for cfg in (base, post):  # the sampling parameters are the strategy's own
        strategy = json.loads((REPO / cfg.prompt.template).read_text())["strategies"][cfg.prompt.strategy]
        p = strategy["parameters"]
        assert (cfg.inference.max_new_tokens, cfg.inference.temperature, cfg.inference.top_p) == \
            (p["max_tokens"], p["temperature"], p["top_p"])


def test_seed_baseline_writes_every_old_file_on_val_with_its_empty_row_skipped(
        tiny_model_dir, tmp_path, monkeypatch, capsys, caplog):
    if not (REFERENCE / "combined_gptoss_v1.json").is_file() or not (SHARED_DATA / "unified").is_dir():
        pytest.skip(f"the seed config reads {REFERENCE} and {SHARED_DATA} (../shared beside the checkout)")
    monkeypatch.chdir(REPO)
    overrides = [f"model.name_or_path={tiny_model_dir}", f"data.dir={SHARED_DATA}", "data.max_samples=6",
                 f"results_dir={tmp_path / 'results'}", "inference.max_new_tokens=8", "inference.progress=false",
                 "executor.gpus_per_node=0"]
    with one_thread(), caplog.at_level(logging.WARNING, logger="hsd"):
        assert main(["validate", "--config", "configs/seed_baseline.yaml", *overrides]) == 0
    run_dir = type(tmp_path)(capsys.readouterr().out.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "results" / "seed_baseline"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    ts = manifest["ts"]
    for pattern in OLD_FILES:
        assert (run_dir / pattern.format(ts=ts)).is_file(), pattern
    # the empty row: one warning line, counted in the manifest and in the report
    skipped = [r.getMessage() for r in caplog.records if "empty text" in r.getMessage()]
    assert len(skipped) == 1 and "unified_val.json: 1 rows with empty text skipped" in skipped[0], skipped
    assert manifest["empty_text_skipped"] == ["row 227 (toxigen_193572)"]
    report = (run_dir / f"evaluation_report_{ts}.txt").read_text()
    assert "1 rows with empty text skipped in unified_val.json (row 227 (toxigen_193572))" in report
    assert "combined_optimized" in report and manifest["samples"] == 6
    records = [json.loads(line) for line in (run_dir / f"intermediate_results_{ts}.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in records} == {"combined_optimized"} and len(records) == 6
    # BASELINE_METRICS.txt: written by hsd validate itself, from the run's records
    baseline = (run_dir / "BASELINE_METRICS.txt").read_text().splitlines()
    assert baseline[0] == "BASELINE METRICS" and "strategy: combined_optimized" in baseline
    assert "samples: 6" in baseline and any(line.startswith("f1_score: ") for line in baseline)
    assert "data val (max_samples 6, seed 42; 1 rows with empty text skipped)" in (run_dir / "report.md").read_text()
    # started again with nothing to do: every file as it was (no second collate)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    with one_thread():
        assert main(["validate", "--config", "configs/seed_baseline.yaml", "--run-dir", str(run_dir), *overrides]) == 0
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"} == before
