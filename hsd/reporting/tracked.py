"""What a validation and a comparison send to the trackers: the numbers of their own reports.

The values are read from the very dictionaries the reports are written from (a run's
``metrics.json``, a comparison's ``comparison.json``), so a tracker never shows a number the
report does not: ``metrics/f1_score`` is the performance CSV's ``f1_score``, ``bias/<group>/
false_positive_rate`` the bias CSV's row, ``delta/<run>/f1/estimate`` the comparison's delta.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional


def _numbers(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``prefix/key`` for each number (booleans as 0/1) of a flat mapping; None and text are left out."""
    return {f"{prefix}/{k}": float(v) if isinstance(v, bool) else v for k, v in values.items()
            if isinstance(v, (int, float))}


def _undefined_as_nan(values: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json writes an undefined rate (NaN: no answered sample, no hate sample) as null;
    the CSV and the tracker show NaN."""
    return {k: math.nan if v is None else v for k, v in values.items()}


def validation_values(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars of a run's ``metrics.json`` (its one strategy): the headline (answered) metrics
    table, the strict ones, per-group rates and counts, parse-status counts, and the table as text.
    ROC-AUC / PR-AUC exist in score mode only (null otherwise: not logged)."""
    (strategy, m), = metrics["strategies"].items()
    perf = m["performance"]
    values = {**_numbers(_undefined_as_nan(perf["answered"]), "metrics"),
              **_numbers(_undefined_as_nan(perf["strict"]), "metrics_strict"),
              **_numbers({k: v for k, v in perf.items() if not isinstance(v, Mapping)}, "metrics")}
    for group in m["bias"]:
        rates = _undefined_as_nan({k: v for k, v in group.items() if k != "group"})
        values.update(_numbers(rates, f"bias/{group['group']}"))
    values.update(_numbers(m["parse_status_counts"], "parse_status"))
    values["report/metrics_table"] = metrics_table(strategy, perf)
    return values


def metrics_table(strategy: str, perf: Mapping[str, Any]) -> str:
    """The headline table as Markdown (TensorBoard's text tab renders it; ``hsd validate`` prints it)."""
    head = perf["answered"]
    cols = ("accuracy", "precision", "recall", "f1_score", "mcc", "balanced_accuracy")
    rows = [f"| strategy | {' | '.join(cols)} | unknown_rate | n |", "|---" * (len(cols) + 3) + "|",
            f"| {strategy} | " + " | ".join(_fmt(head[c]) for c in cols)
            + f" | {_fmt(perf['unknown_rate'])} | {perf['n_samples']} |"]
    return "\n".join(rows)


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


def comparison_values(comp: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars of ``comparison.json``: each run's paired deltas against the first (estimate and
    interval), and each candidate's success-criterion verdict (met, beyond noise, its sentence)."""
    values: dict[str, Any] = {}
    for run, deltas in comp.get("deltas", {}).items():
        for metric, interval in deltas.items():
            values.update(_numbers(interval, f"delta/{run}/{metric}"))
    for v in comp.get("criterion", {}).get("verdicts", []):
        values.update(_numbers({"met": v["met"], "beyond_noise": v["beyond_noise"]}, f"verdict/{v['candidate']}"))
        values[f"verdict/{v['candidate']}/text"] = v["text"]
    return values


def log_to_trackers(names: list[str], path: Path, experiment: str, config: Mapping[str, Any],
                    values: Mapping[str, Any]) -> list[str]:
    """Start ``names`` for the run at ``path``, log ``values`` at step 0, finish; the trackers that logged."""
    from hsd import tracking

    if not names:
        return []
    tracked = tracking.start(names, tracking.RunInfo(path, experiment, purge_step=0), config)  # a rerun replaces
    tracked.log(values, step=0)
    logged = tracked.names
    tracked.finish()
    return logged
