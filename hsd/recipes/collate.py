"""``hsd collate RUN_OR_EXPERIMENT_DIR...`` and ``hsd report RUN_OR_EXPERIMENT_DIR...``.

The job that ends the pipeline. For every validation run found: merge its per-rank shards if
rank 0 did not get to it (checked against the run's data selection: every sample exactly
once), compute every metric from the per-sample records, score the reference classifiers on
exactly the same samples, and write ``metrics_full.json``, ``report.md``, ``report.html`` and
``plots/*.png`` (and, for a baseline run, ``BASELINE_METRICS.txt``). For an experiment directory with several runs, also the comparison
(:mod:`hsd.recipes.compare`) in ``<experiment>/comparison/``.

``hsd report`` does the same from the records alone: it never merges and reuses the reference
predictions saved by ``collate`` (``reference_predictions.json``), so it needs no model and,
after one collate, no data.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from hsd.recipes import compare
from hsd.config import ReportConfig
from hsd.metrics.references import REFERENCES, as_records
from hsd.metrics.summary import evaluate, nan_to_none, paired, settings
from hsd.reporting import refcache, run_report, summary_files
from hsd.reporting.output import write_report
from hsd.reporting.misclassified import select_errors, top_errors, unanswered
from hsd.reporting.rundata import (RunData, find_runs, is_run, load_run, merged_file, read_config,
                                  threshold_transfer)
from hsd.runs import RunError, RunLock, atomic_write_json, atomic_write_text, timestamp

log = logging.getLogger("hsd.recipes.collate")
TFIDF = "tfidf_logreg"  # the reference a run is tested against, paired, in its own report


def report_config(run: RunData) -> ReportConfig:
    return run.cfg.report if run.cfg else ReportConfig()


def full_metrics(run: RunData, refs, provenance: dict[str, Any], cfg: ReportConfig,
                 prepared: Optional[refcache.Prepared] = None) -> dict[str, Any]:
    """Everything the run's report shows, JSON-ready (undefined numbers are null). ``prepared``:
    the references' numbers computed ahead (:mod:`hsd.recipes.collate_ahead`), used where they match."""
    log_path = run.training_log()
    metrics = evaluate(run.records, cfg)
    ref_records = {ref.name: as_records(run.records, ref) for ref in refs}
    return nan_to_none({
        "generated": timestamp(),
        "run": run.info(),
        "bootstrap": settings(cfg),
        "metrics": metrics,
        "threshold_from_validation": threshold_transfer(run) if metrics["bias_auc"] else None,
        "references": {name: {"description": REFERENCES[name][0],
                              "metrics": refcache.reference_metrics(records, name, cfg, prepared)}
                       for name, records in ref_records.items()},
        "reference_provenance": provenance,
        "vs_tfidf": {name: paired(records, run.records, cfg) for name, records in ref_records.items() if name == TFIDF},
        "errors": select_errors(run.records, cfg.errors_per_group, cfg.bootstrap_seed),
        "top_errors": top_errors(run.records, cfg.top_errors),
        "unanswered": unanswered(run.records, cfg.errors_per_group),
        "training_log": str(log_path) if log_path else None,
    })


def merge_if_needed(path: Path, data_dir: Optional[str]) -> bool:
    """Merge the shards of a run rank 0 did not finish merging; True if it merged."""
    from hsd.data import select_samples
    from hsd.inference import store
    from hsd.reporting.seed_files import write_run_outputs

    if merged_file(path) is not None or not store.shard_files(path):
        return False
    cfg = read_config(path)
    if cfg is None:
        raise RunError(f"{path} has shards but no config.yaml: cannot tell which samples it should hold")
    data_cfg = dataclasses.replace(cfg.data, dir=data_dir) if data_dir else cfg.data
    records = store.merge(path, [s.id for s in select_samples(data_cfg)])
    meta = {"model": cfg.model.name_or_path + (f" + adapter {cfg.model.adapter}" if cfg.model.adapter else ""),
            "template": cfg.prompt.template, "data": f"{cfg.data.subset or cfg.data.split}",
            "command": "hsd collate (merged the shards)"}
    write_run_outputs(path, records, records[0].strategy, timestamp(), meta, cfg.report.top_errors, cfg.report)
    log.info("merged %d records of %s", len(records), path)
    return True


def collate_run(path: Path, data_dir: Optional[str], merge: bool,
                prepared: Optional[refcache.Prepared] = None) -> RunData:
    """Merge (collate only), compute and write one run's reports. Returns the loaded run.
    ``prepared``: the references fitted and scored ahead (:mod:`hsd.recipes.collate_ahead`)."""
    if not merge or merged_file(path) is not None:  # read it all first: a run that cannot be read is
        load_run(path)                                 # refused with nothing written, no lock file
    with RunLock(path / ".lock"):
        if merge:
            merge_if_needed(path, data_dir)
        run = load_run(path)
        refs, provenance = refcache.references_for(run, data_dir, use_cache=not merge, prepared=prepared)
        full = full_metrics(run, refs, provenance, report_config(run), prepared)
        written = write_report(run.path, full, run_report.build)
        atomic_write_json(run.path / "metrics_full.json", full)
        if run.role == "baseline":  # the old guide wrote it before any fine-tuning
            atomic_write_text(run.path / "BASELINE_METRICS.txt", summary_files.render_baseline(full))
        refcache.save(run, refs, provenance)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return run


def run(paths: Sequence[str | Path], data_dir: Optional[str] = None, merge: bool = True) -> list[Path]:
    """Collate each run (and compare the runs of each experiment directory); returns report paths."""
    reports: list[Path] = []
    for given in map(Path, paths):
        runs = [collate_run(p, data_dir, merge) for p in find_runs(given)]
        reports += [r.path / "report.html" for r in runs]
        if not is_run(given) and len(runs) > 1:
            reports.append(compare.compare_experiment(given, runs, data_dir))
    return reports


def collate_experiment(exp: Path, finished: Sequence[Path], unfinished: Sequence[dict[str, Any]],
                       data_dir: Optional[str] = None) -> Path:
    """The end of a pipeline: collate the validation runs that finished and write the comparison,
    which also lists the stages that did not finish (``unfinished``: stage, state, run_dir,
    error). Runs of failed validations are left alone: their records are incomplete."""
    if not finished:
        lines = "; ".join(f"{u['stage']} {u['state']}: {u.get('error') or '-'}" for u in unfinished)
        raise RunError(f"no validation run of {exp} finished, nothing to report ({lines})")
    runs = [collate_run(p, data_dir, merge=True) for p in finished]
    if len(runs) == 1 and not unfinished:  # `hsd submit baseline`: one run, its own report
        return runs[0].path / "report.html"
    return compare.compare_experiment(exp, runs, data_dir, unfinished)
