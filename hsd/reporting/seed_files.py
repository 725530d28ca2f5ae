"""The old pipeline's output files, same names and column order, computed from records.

People have scripts that read ``performance_metrics_<ts>.csv`` and friends by column name and
position, so the old columns come first, in the old order, and anything new comes after them.
Floats are written by pandas' default ``to_csv`` (``repr`` precision), as the old files were.
Every number comes from :mod:`hsd.metrics`; the unknown policy is documented there (headline:
answered samples only, as the old columns; strict numbers and the unknown rate beside them).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from hsd.config import ReportConfig
from hsd.metrics.bias import GroupMetrics, compute_bias
from hsd.metrics.frame import nan_to_none, to_frame
from hsd.metrics.performance import HEADLINE, Performance, compute_performance
from hsd.metrics.summary import score_metrics
from hsd.records import Record
from hsd.reporting.evaluation_report import render_report
from hsd.reporting.misclassified import top_errors
from hsd.reporting import score_files
from hsd.runs import RunError, atomic_write_json, atomic_write_text

PERFORMANCE_COLUMNS = ["strategy", "accuracy", "precision", "recall", "f1_score", "true_positive",
                       "true_negative", "false_positive", "false_negative"]
# after the per-group <g>_fpr,<g>_fnr,<g>_samples columns, which end the old header
PERFORMANCE_NEW_COLUMNS = ["mcc", "balanced_accuracy", "n_samples", "unknown_count", "unknown_rate",
                           "strict_accuracy", "strict_precision", "strict_recall", "strict_f1_score",
                           "strict_mcc", "strict_balanced_accuracy", "roc_auc"]
BIAS_COLUMNS = ["strategy", "persona_tag", "sample_count", "false_positive_rate", "false_negative_rate",
                "true_positive", "true_negative", "false_positive", "false_negative"]
BIAS_NEW_COLUMNS = ["unknown_count", "strict_false_positive_rate", "strict_false_negative_rate",
                    "false_positive_rate_defined", "false_negative_rate_defined"]
UNIFIED_COLUMNS = ["strategy", "input_text", "true_label", "predicted_label", "response_time", "rationale",
                   "target_group_norm", "persona_tag", "source_dataset", "status"]
# persona_tag holds the target group, the key bias_metrics groups by, so a script that groups this
# file by persona_tag gets the bias file's groups; the record's own persona tag is the last column.
UNIFIED_NEW_COLUMNS = ["sample_id", "parse_status", "prompt_hash", "p_hate", "rank", "prompt_tokens",
                       "new_tokens", "stop_reason", "raw_persona_tag"]
# Record field -> old column of strategy_unified_results (the rest keep their names).
_UNIFIED_RENAME = {"text": "input_text", "latency_s": "response_time", "target_group": "target_group_norm",
                   "source": "source_dataset"}


def write_run_outputs(run_dir: Path, records: Sequence[Record], strategy: str, ts: str,
                      meta: Mapping[str, Any], top_n: int = ReportConfig.top_errors,
                      report: ReportConfig | None = None) -> list[Path]:
    """Write the seed files of one strategy's records into ``run_dir``; returns their paths."""
    wrong = {r.strategy for r in records} - {strategy}
    if wrong:
        raise ValueError(f"records of strategies {sorted(wrong)} passed as strategy {strategy!r}")
    return write_outputs(run_dir, {strategy: list(records)}, ts, meta, top_n, report)


def write_outputs(run_dir: Path, by_strategy: Mapping[str, Sequence[Record]], ts: str,
                  meta: Mapping[str, Any], top_n: int = ReportConfig.top_errors,
                  report: ReportConfig | None = None) -> list[Path]:
    """Seed files for one or more strategies (old runs could hold several: one CSV row each);
    ``top_n``: the top false positives / negatives the text report lists (``report.top_errors``);
    ``report``: the interval settings of the P(hate) metrics (bias AUCs), written when scores exist."""
    _check_unique(by_strategy)
    results = {s: (compute_performance(recs), compute_bias(recs)) for s, recs in by_strategy.items()}
    status_counts = {s: dict(Counter(r.parse_status for r in recs)) for s, recs in by_strategy.items()}
    scores = {s: score_metrics(recs, report or ReportConfig()) for s, recs in by_strategy.items()}
    files = {
        # the old pipeline wrote this one file with the csv module: CRLF line ends, kept for diffing
        f"performance_metrics_{ts}.csv": performance_frame(results).to_csv(index=False, lineterminator="\r\n"),
        f"bias_metrics_{ts}.csv": bias_frame(results).to_csv(index=False),
        f"strategy_unified_results_{ts}.csv": unified_frame(by_strategy).to_csv(index=False),
        f"evaluation_report_{ts}.txt": render_report(
            results, status_counts, meta, {s: top_errors(recs, top_n) for s, recs in by_strategy.items()}, scores),
        f"intermediate_results_{ts}.jsonl": "".join(
            json.dumps(r.to_json(), ensure_ascii=False) + "\n" for recs in by_strategy.values() for r in recs),
        **score_files.files(scores, ts),
    }
    paths = []
    for name, text in files.items():
        atomic_write_text(run_dir / name, text)
        paths.append(run_dir / name)
    atomic_write_json(run_dir / "metrics.json", metrics_dict(results, status_counts, ts, meta))
    return paths + [run_dir / "metrics.json"]


def _check_unique(by_strategy: Mapping[str, Sequence[Record]]) -> None:
    for strategy, recs in by_strategy.items():
        dup = [sid for sid, n in Counter(r.sample_id for r in recs).items() if n > 1]
        if dup:
            raise RunError(f"strategy {strategy!r}: sample ids recorded more than once: {dup[:5]} "
                           "(each sample must appear exactly once; check the shard merge)")


def performance_frame(results: Mapping[str, tuple[Performance, list[GroupMetrics]]]) -> pd.DataFrame:
    """One row per strategy: old columns, per group (sorted) fpr/fnr/samples, then new columns."""
    groups = sorted({g.group for _, bias in results.values() for g in bias})
    rows = []
    for strategy, (perf, bias) in results.items():
        head = perf.headline
        row: dict[str, Any] = {"strategy": strategy, **{c: getattr(head, c) for c in PERFORMANCE_COLUMNS[1:]}}
        by_group = {g.group: g for g in bias}
        for g in groups:
            m = by_group.get(g)
            row[f"{g}_fpr"] = old_rate(m.false_positive_rate) if m else math.nan
            row[f"{g}_fnr"] = old_rate(m.false_negative_rate) if m else math.nan
            row[f"{g}_samples"] = m.sample_count if m else 0
        row.update(mcc=head.mcc, balanced_accuracy=head.balanced_accuracy, n_samples=perf.n_samples,
                   unknown_count=perf.unknown_count, unknown_rate=perf.unknown_rate, roc_auc=perf.roc_auc)
        row.update({f"strict_{k}": getattr(perf.strict, k) for k in
                    ("accuracy", "precision", "recall", "f1_score", "mcc", "balanced_accuracy")})
        rows.append(row)
    group_cols = [f"{g}_{k}" for g in groups for k in ("fpr", "fnr", "samples")]
    return pd.DataFrame(rows, columns=PERFORMANCE_COLUMNS + group_cols + PERFORMANCE_NEW_COLUMNS)


def old_rate(value: float) -> float:
    """A group's FPR/FNR as the old files wrote it: 0.0 where it is undefined (no answered normal /
    hate sample in the group), so the users' re-check scripts (which do the same) agree with the
    file; the ``*_defined`` columns, the reports and metrics.json keep "undefined" visible."""
    return 0.0 if math.isnan(value) else value


def bias_frame(results: Mapping[str, tuple[Performance, list[GroupMetrics]]]) -> pd.DataFrame:
    """One row per (strategy, group); the old ``persona_tag`` column holds the target group."""
    rows = []
    for s, (_, bias) in results.items():
        for g in bias:
            row = {"strategy": s, "persona_tag": g.group, **g.to_dict()}
            for rate in ("false_positive_rate", "false_negative_rate"):
                row[f"{rate}_defined"] = not math.isnan(row[rate])
                row[rate] = old_rate(row[rate])
            rows.append(row)
    return pd.DataFrame(rows, columns=BIAS_COLUMNS + BIAS_NEW_COLUMNS)


def unified_frame(by_strategy: Mapping[str, Sequence[Record]]) -> pd.DataFrame:
    """Per-sample rows; ``persona_tag`` is the target group (as in the bias CSV), the raw tag is
    ``raw_persona_tag``. ``status`` keeps the old meaning, the model call succeeded (a record
    exists only for a completed generation); whether its answer was read is ``parse_status``."""
    frame = to_frame([r for recs in by_strategy.values() for r in recs])
    frame["raw_persona_tag"] = frame["persona_tag"]
    frame = frame.rename(columns=_UNIFIED_RENAME)
    frame["persona_tag"] = frame["target_group_norm"]
    frame["status"] = "success"
    return frame.reindex(columns=UNIFIED_COLUMNS + UNIFIED_NEW_COLUMNS)


def metrics_dict(results: Mapping[str, tuple[Performance, list[GroupMetrics]]],
                 status_counts: Mapping[str, Mapping[str, int]], ts: str, meta: Mapping[str, Any]) -> dict:
    """Every number of the CSVs and the report, machine-readable (NaN written as null)."""
    strategies = {
        s: {"performance": perf.to_dict(), "bias": [g.to_dict() for g in bias],
            "parse_status_counts": dict(status_counts[s])}
        for s, (perf, bias) in results.items()
    }
    return nan_to_none({"timestamp": ts, "headline_policy": HEADLINE, "meta": dict(meta),
                         "strategies": strategies})

