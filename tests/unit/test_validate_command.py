"""``hsd validate``'s own step after the run: a baseline run it completed is collated on its own,
so ``BASELINE_METRICS.txt`` exists before any fine-tuning; nothing else is touched."""

from __future__ import annotations

from _report_helpers import make_dataset, make_run
from hsd.commands.validate import baseline_metrics
from hsd.reporting.rundata import read_config


def _files(run):
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}


def test_a_completed_baseline_run_gets_its_baseline_metrics_once(tmp_path):
    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "exp", "base", data, "rich", 0.8, 0.1, seed=1, merge=True)
    baseline_metrics(read_config(run), run)
    lines = (run / "BASELINE_METRICS.txt").read_text().splitlines()
    assert lines[0] == "BASELINE METRICS" and any(line.startswith("f1_score: ") for line in lines)
    assert (run / "report.md").is_file() and (run / "metrics_full.json").is_file()
    before = _files(run)
    baseline_metrics(read_config(run), run)  # started again with nothing new: every byte as it was
    assert _files(run) == before


def test_a_fine_tuned_or_unmerged_run_is_left_alone(tmp_path):
    data = make_dataset(tmp_path / "data")
    tuned = make_run(tmp_path / "exp", "tuned", data, "simple", 0.8, 0.1, seed=2, adapter="some/adapter", merge=True)
    unmerged = make_run(tmp_path / "exp", "unmerged", data, "rich", 0.8, 0.1, seed=3)
    for run in (tuned, unmerged):
        before = _files(run)
        baseline_metrics(read_config(run), run)
        assert _files(run) == before


def test_a_collate_failure_is_one_warning_line_not_a_failed_run(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "exp", "base", data, "rich", 0.8, 0.1, seed=4, merge=True)
    (data / "unified" / "unified_train.json").unlink()  # the TF-IDF reference cannot be fitted
    baseline_metrics(read_config(run), run)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {run}: the run is complete, but BASELINE_METRICS.txt")
    assert err[0].endswith(f"write them with: hsd collate {run}") and "train split" in err[0]
    assert not (run / "BASELINE_METRICS.txt").exists()
