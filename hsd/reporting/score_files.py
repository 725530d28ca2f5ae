"""``bias_auc_<ts>.csv`` and ``calibration_<ts>.csv``: the P(hate) metrics beside the seed CSVs.

New files, so the old CSVs keep their columns. Written only when some sample has a score.
``bias_auc``: one row per (strategy, target group) with each AUC and its interval bounds (empty
where undefined, the reason in ``<auc>_undefined``), then one row per strategy with target group
``generalized_mean`` holding the power means and the ``overall_auc`` / ``final_score`` columns.
``calibration``: one row per (strategy, group or ``all``, non-empty bin).
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from hsd.metrics.bias_auc import SUBMETRICS

MEAN_ROW = "generalized_mean"
BIAS_AUC_COLUMNS = (["strategy", "target_group", "scored", "positives", "negatives"]
                    + [f"{m}{suffix}" for m in SUBMETRICS for suffix in ("", "_low", "_high", "_undefined")]
                    + ["overall_auc", "overall_auc_low", "overall_auc_high", "final_score", "final_score_low",
                       "final_score_high", "power"])
CALIBRATION_COLUMNS = ["strategy", "target_group", "ece", "n", "bin_low", "bin_high", "count", "mean_p_hate",
                       "fraction_hate"]


def _iv(prefix: str, iv: Mapping[str, Any]) -> dict[str, Any]:
    return {prefix: iv["estimate"], f"{prefix}_low": iv["low"], f"{prefix}_high": iv["high"]}


def bias_auc_frame(scores: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """``scores``: strategy -> :func:`hsd.metrics.summary.score_metrics` block."""
    rows = []
    for strategy, block in scores.items():
        b = block["bias_auc"]
        if not b:
            continue
        for g in b["groups"]:
            row = {"strategy": strategy, "target_group": g["group"], "scored": g["scored"],
                   "positives": g["positives"], "negatives": g["negatives"]}
            for m in SUBMETRICS:
                row.update(_iv(m, g[m]), **{f"{m}_undefined": g[f"{m}_undefined"]})
            rows.append(row)
        mean = {"strategy": strategy, "target_group": MEAN_ROW, "scored": b["n_scored"], "power": b["power"],
                **_iv("overall_auc", b["overall_auc"]), **_iv("final_score", b["final_score"])}
        for m in SUBMETRICS:
            mean.update(_iv(m, b["generalized_mean"][m]))
        rows.append(mean)
    frame = pd.DataFrame(rows, columns=BIAS_AUC_COLUMNS)
    counts = ["scored", "positives", "negatives"]  # integers, empty on the mean rows
    frame[counts] = frame[counts].astype("Int64")
    return frame


def calibration_frame(scores: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    rows = []
    for strategy, block in scores.items():
        cal = block["calibration"]
        if not cal:
            continue
        for group, rel in [("all", cal["overall"]), *cal["groups"].items()]:
            rows += [{"strategy": strategy, "target_group": group, "ece": rel["ece"], "n": rel["n"],
                      "bin_low": b["low"], "bin_high": b["high"], "count": b["count"],
                      "mean_p_hate": b["mean_p_hate"], "fraction_hate": b["fraction_hate"]} for b in rel["bins"]]
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def files(scores: Mapping[str, Mapping[str, Any]], ts: str) -> dict[str, str]:
    """File name -> CSV text; empty when no strategy has scores."""
    if not any(block["bias_auc"] for block in scores.values()):
        return {}
    return {f"bias_auc_{ts}.csv": bias_auc_frame(scores).to_csv(index=False),
            f"calibration_{ts}.csv": calibration_frame(scores).to_csv(index=False)}
