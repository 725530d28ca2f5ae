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


# --- the same collation prepared by a second process while the model generates (hsd.recipes.collate_ahead) ---

def _ahead_cfg(run, **report):
    from hsd.config import replace

    cfg = read_config(run)
    return replace(cfg, report=replace(cfg.report, collate_ahead=True, **report))


def _comparable(run):
    import json

    full = json.loads((run / "metrics_full.json").read_text())
    return {k: v for k, v in full.items() if k not in ("generated", "run")}


def test_the_process_started_ahead_writes_what_the_collation_here_writes(tmp_path):
    from hsd.recipes.collate_ahead import CollateAhead

    data = make_dataset(tmp_path / "data")
    here = make_run(tmp_path / "exp", "here", data, "rich", 0.8, 0.1, seed=5, merge=True, scored=True)
    there = make_run(tmp_path / "exp", "there", data, "rich", 0.8, 0.1, seed=5, merge=True, scored=True)
    baseline_metrics(read_config(here), here)
    ahead = CollateAhead.start(_ahead_cfg(there))
    baseline_metrics(read_config(there), there, ahead)
    assert ahead.prepared_used  # the references were fitted and scored before the "run" was handed over
    assert _comparable(there) == _comparable(here) and _comparable(here)["references"]["tfidf_logreg"]["metrics"]
    def summary(run):
        return [line.replace(run.name, "RUN") for line in (run / "BASELINE_METRICS.txt").read_text().splitlines()
                if not line.startswith("generated: ")]

    assert summary(there) == summary(here)


def test_what_was_prepared_for_other_samples_is_not_used(tmp_path):
    from hsd.recipes.collate_ahead import CollateAhead

    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "exp", "base", data, "rich", 0.8, 0.1, seed=6, merge=True)
    reference = make_run(tmp_path / "exp", "ref", data, "rich", 0.8, 0.1, seed=6, merge=True)
    baseline_metrics(read_config(reference), reference)
    ahead = CollateAhead.start(_ahead_cfg(run, bootstrap_seed=7))  # scored with other report settings
    baseline_metrics(read_config(run), run, ahead)
    assert ahead.prepared_used  # the predictions fit (same samples) ...
    assert _comparable(run) == _comparable(reference)  # ... but each reference's numbers were computed again
    from hsd.config import replace

    other = make_run(tmp_path / "exp2", "base", data, "rich", 0.8, 0.1, seed=6, merge=True, split="val")
    cfg = read_config(run)  # the test split prepared, a run of the val split handed over
    ahead = CollateAhead.start(replace(cfg, report=replace(cfg.report, collate_ahead=True)))
    baseline_metrics(read_config(other), other, ahead)
    assert not ahead.prepared_used and (other / "BASELINE_METRICS.txt").is_file()


def test_a_collate_failure_in_the_process_ahead_is_the_same_one_warning_line(tmp_path, capsys):
    from hsd.recipes.collate_ahead import CollateAhead

    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "exp", "base", data, "rich", 0.8, 0.1, seed=4, merge=True)
    (data / "unified" / "unified_train.json").unlink()
    ahead = CollateAhead.start(_ahead_cfg(run))
    baseline_metrics(read_config(run), run, ahead)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {run}: the run is complete, but BASELINE_METRICS.txt")
    assert "train split" in err[0] and not (run / "BASELINE_METRICS.txt").exists()


def test_a_process_ahead_that_died_leaves_the_collation_to_the_command(tmp_path):
    from hsd.recipes.collate_ahead import CollateAhead

    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "exp", "base", data, "rich", 0.8, 0.1, seed=8, merge=True)
    ahead = CollateAhead.start(_ahead_cfg(run))
    ahead._proc.kill()
    baseline_metrics(read_config(run), run, ahead)
    assert not ahead.prepared_used and (run / "BASELINE_METRICS.txt").is_file()


def test_a_run_with_nothing_to_collate_ends_the_process_ahead_unused(tmp_path):
    from hsd.recipes.collate_ahead import CollateAhead

    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "exp", "unmerged", data, "rich", 0.8, 0.1, seed=3)
    before = _files(run)
    ahead = CollateAhead.start(_ahead_cfg(run))
    baseline_metrics(read_config(run), run, ahead)
    assert ahead._proc.returncode is not None and _files(run) == before


def test_the_command_does_not_import_the_report_stack_when_the_process_ahead_collated(tmp_path):
    """Its imports (~0.7 s: matplotlib, SciPy, the report modules) were on the command's critical path."""
    import subprocess
    import sys

    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "exp", "base", data, "rich", 0.8, 0.1, seed=9, merge=True)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from hsd.commands.validate import baseline_metrics\n"
        "from hsd.config import replace\n"
        "from hsd.recipes.collate_ahead import CollateAhead\n"
        "from hsd.reporting.rundata import read_config\n"
        f"run = Path({str(run)!r})\n"
        "cfg = read_config(run)\n"
        "ahead = CollateAhead.start(replace(cfg, report=replace(cfg.report, collate_ahead=True)))\n"
        "baseline_metrics(cfg, run, ahead)\n"
        "assert ahead.prepared_used\n"
        "print(sorted(m for m in ('matplotlib', 'scipy', 'sklearn', 'hsd.recipes.collate') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]" and (run / "BASELINE_METRICS.txt").is_file()
