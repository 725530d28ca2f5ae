"""Per-group error rates and the equalized-odds difference, through fairlearn.

A classifier can look fine overall while flagging one group's harmless posts twice as often
as another's; the per-group false-positive and false-negative rates show it, and fairlearn's
equalized-odds difference (the larger of the between-group spreads of TPR and FPR) puts it in
one number (computed here from the per-group rates of a fairlearn ``MetricFrame``). With 86-324 samples per group a rate moves by about +-0.1 from noise alone, so a
group with fewer than ``min_class_count`` answered positives or negatives is flagged: its
rate is too noisy to compare (the intervals in :mod:`hsd.metrics.intervals` say how much).

Predictions other than hate/normal (``unknown``) are left out of the rates, as in the seed
CSVs; the table counts them per group.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    false_negative_rate,
    false_positive_rate,
)

POSITIVE = "hate"
NEGATIVE = "normal"


@dataclass(frozen=True)
class SmallGroupFlag:
    group: str
    positives: int
    negatives: int
    min_class_count: int

    def message(self) -> str:
        return (f"group '{self.group}' has {self.positives} answered hate and {self.negatives} answered "
                f"normal samples (fewer than {self.min_class_count}): its FPR/FNR are too noisy to compare")


def _answered(y_true: Sequence[str], y_pred: Sequence[str], groups: Sequence[str]):
    yt, yp, g = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    keep = np.isin(yp, [POSITIVE, NEGATIVE])
    return yt[keep], yp[keep], g[keep]


def _count_of(label: str, where: str):
    """A MetricFrame metric counting samples whose ``where`` ('true' or 'pred') is ``label``."""

    def metric(y_true, y_pred) -> int:
        return int((np.asarray(y_true if where == "true" else y_pred) == label).sum())

    return metric


def group_table(y_true: Sequence[str], y_pred: Sequence[str], groups: Sequence[str]) -> pd.DataFrame:
    """One row per group (sorted): samples, unknown, positives, negatives, tp/tn/fp/fn, fpr, fnr.

    Rates and confusion counts come from a fairlearn ``MetricFrame`` over the answered samples.
    """
    yt, yp, g = _answered(y_true, y_pred, groups)
    is_pos = lambda y: np.asarray(y) == POSITIVE  # noqa: E731
    metrics = {
        "positives": _count_of(POSITIVE, "true"),
        "negatives": _count_of(NEGATIVE, "true"),
        "true_positive": lambda t, p: int((is_pos(t) & is_pos(p)).sum()),
        "true_negative": lambda t, p: int((~is_pos(t) & ~is_pos(p)).sum()),
        "false_positive": lambda t, p: int((~is_pos(t) & is_pos(p)).sum()),
        "false_negative": lambda t, p: int((is_pos(t) & ~is_pos(p)).sum()),
        "fpr": partial(false_positive_rate, pos_label=POSITIVE),
        "fnr": partial(false_negative_rate, pos_label=POSITIVE),
    }
    if len(yt):
        frame = MetricFrame(metrics=metrics, y_true=yt, y_pred=yp, sensitive_features=pd.Series(g, name="group"))
        table = frame.by_group
    else:  # nothing answered (e.g. every response cut off): counts only, rates undefined
        table = pd.DataFrame(columns=list(metrics), dtype=float)
    everyone = pd.Series(np.asarray(groups), name="group")
    samples = everyone.value_counts().sort_index()
    unknown = pd.Series(~np.isin(np.asarray(y_pred), [POSITIVE, NEGATIVE]), index=everyone).groupby(level=0).sum()
    table = table.reindex(samples.index)  # a group whose answers are all unknown keeps its row
    table.insert(0, "samples", samples.astype(int))
    table.insert(1, "unknown", unknown.reindex(samples.index).astype(int))
    table = _undefined_rates_to_nan(table)
    counts = [c for c in table.columns if c not in ("fpr", "fnr")]
    table[counts] = table[counts].fillna(0).astype(int)
    return table


def _undefined_rates_to_nan(table: pd.DataFrame) -> pd.DataFrame:
    """fairlearn returns 0 for an FPR with no negatives; hsd says 'undefined' (NaN) instead."""
    table = table.copy()
    table.loc[table["negatives"].fillna(0) == 0, "fpr"] = np.nan
    table.loc[table["positives"].fillna(0) == 0, "fnr"] = np.nan
    return table


def equalized_odds(table: pd.DataFrame) -> float:
    """fairlearn's equalized-odds difference (between groups, worst case) from :func:`group_table`.

    The larger of the max-min spreads over groups of TPR (= 1 - FNR) and of FPR, as
    ``fairlearn.metrics.equalized_odds_difference`` computes it. A rate a group cannot have (no
    answered hate samples for a TPR) is left out of its spread; fairlearn would count it as 0
    and report a gap that is not there. NaN with fewer than two groups.
    """
    if len(table) < 2:
        return float("nan")
    spread = lambda r: r.max(skipna=True) - r.min(skipna=True)  # noqa: E731
    return float(np.fmax(spread(1.0 - table["fnr"]), spread(table["fpr"])))


def small_groups(table: pd.DataFrame, min_class_count: int) -> list[SmallGroupFlag]:
    """Groups with fewer than ``min_class_count`` answered positives or negatives."""
    return [SmallGroupFlag(str(name), int(row.positives), int(row.negatives), min_class_count)
            for name, row in table.iterrows()
            if row.positives < min_class_count or row.negatives < min_class_count]

