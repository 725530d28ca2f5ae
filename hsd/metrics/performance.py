"""Classification metrics from per-sample records (scikit-learn), positive class ``hate``.

**Unknown predictions** (no readable final answer, see :mod:`hsd.parsing`) are handled in one
place, :func:`policy_labels`, under two policies, and both sets of numbers are always computed:

* ``answered`` — **the headline.** Metrics over the samples with a hate/normal prediction;
  unknowns are left out of the confusion counts. This is what the old pipeline's
  ``performance_metrics_*.csv`` / ``bias_metrics_*.csv`` columns hold, so the seed-compatible
  files stay comparable with old runs (``hsd import-legacy --keep-predictions`` reproduces them
  exactly). Because leaving samples out can flatter a model that fails to answer hard cases,
  every report states the unknown count and rate next to it, and the strict numbers.
* ``strict`` — every sample counts and an unknown is wrong: on a hate sample it is a false
  negative, on a normal sample a false positive. A lower bound for the answered numbers.

Undefined ratios (no positive predictions for precision, an empty set) are NaN, not 0: a
number that does not exist should not look like a bad score.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from hsd.metrics.frame import Records, to_frame
from hsd.records import LABELS, POSITIVE

UnknownPolicy = Literal["answered", "strict"]
HEADLINE: UnknownPolicy = "answered"
NEGATIVE = "normal"
_OPPOSITE = {"hate": "normal", "normal": "hate"}


def policy_labels(frame: pd.DataFrame, policy: UnknownPolicy) -> tuple[pd.Series, pd.Series]:
    """(y_true, y_pred) under ``policy``; the only place where unknown predictions are handled."""
    bad = frame.loc[~frame["true_label"].isin(LABELS), "true_label"]
    if len(bad):
        raise ValueError(f"true labels must be hate/normal; found {sorted(set(map(str, bad)))}")
    answered = frame["predicted_label"].isin(LABELS)
    if policy == "answered":
        return frame.loc[answered, "true_label"], frame.loc[answered, "predicted_label"]
    if policy == "strict":
        wrong = frame["true_label"].map(_OPPOSITE)
        return frame["true_label"], frame["predicted_label"].where(answered, wrong)
    raise ValueError(f"unknown policy {policy!r}; valid: answered, strict")


def confusion_counts(y_true: pd.Series, y_pred: pd.Series) -> dict[str, int]:
    """tp/tn/fp/fn with hate as the positive class (sklearn's confusion matrix)."""
    if len(y_true) == 0:  # e.g. a group whose every answer is unknown; sklearn refuses empty input
        return {"true_positive": 0, "true_negative": 0, "false_positive": 0, "false_negative": 0}
    tn, fp, fn, tp = skm.confusion_matrix(y_true, y_pred, labels=[NEGATIVE, POSITIVE]).ravel()
    return {"true_positive": int(tp), "true_negative": int(tn),
            "false_positive": int(fp), "false_negative": int(fn)}


def rate(numerator: int, denominator: int) -> float:
    """numerator / denominator, NaN when the denominator is 0 (e.g. FNR of a group without hate)."""
    return numerator / denominator if denominator else math.nan


@dataclass(frozen=True)
class Scores:
    """Metrics of one policy. Field names match the old CSV column names where one exists."""

    policy: str
    n: int  # samples scored under this policy
    accuracy: float
    precision: float
    recall: float
    f1_score: float
    mcc: float
    balanced_accuracy: float
    true_positive: int
    true_negative: int
    false_positive: int
    false_negative: int


def score(y_true: pd.Series, y_pred: pd.Series, policy: str) -> Scores:
    counts = confusion_counts(y_true, y_pred)
    if len(y_true) == 0:
        nan = math.nan
        return Scores(policy, 0, nan, nan, nan, nan, nan, nan, **counts)
    pos = {"pos_label": POSITIVE, "zero_division": np.nan}
    with warnings.catch_warnings():  # one class only: sklearn warns, the number is still defined
        warnings.simplefilter("ignore")
        balanced = skm.balanced_accuracy_score(y_true, y_pred)
        mcc = skm.matthews_corrcoef(y_true, y_pred)
    return Scores(
        policy=policy,
        n=len(y_true),
        accuracy=float(skm.accuracy_score(y_true, y_pred)),
        precision=float(skm.precision_score(y_true, y_pred, **pos)),
        recall=float(skm.recall_score(y_true, y_pred, **pos)),
        f1_score=float(skm.f1_score(y_true, y_pred, **pos)),
        mcc=float(mcc),
        balanced_accuracy=float(balanced),
        **counts,
    )


@dataclass(frozen=True)
class Performance:
    """All headline numbers of one strategy's records."""

    n_samples: int
    unknown_count: int
    unknown_rate: float
    answered: Scores
    strict: Scores
    roc_auc: Optional[float]  # score mode only: from p_hate over samples that have it
    pr_auc: Optional[float] = None  # score mode only: average precision of p_hate (hate positive)

    @property
    def headline(self) -> Scores:
        return getattr(self, HEADLINE)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["headline_policy"] = HEADLINE
        return out


def compute_performance(records: Records) -> Performance:
    """Accuracy, precision, recall, F1, MCC, balanced accuracy and counts under both policies."""
    frame = to_frame(records)
    n = len(frame)
    unknown = int((~frame["predicted_label"].isin(LABELS)).sum())
    return Performance(
        n_samples=n,
        unknown_count=unknown,
        unknown_rate=rate(unknown, n),
        answered=score(*policy_labels(frame, "answered"), policy="answered"),
        strict=score(*policy_labels(frame, "strict"), policy="strict"),
        roc_auc=_roc_auc(frame),
        pr_auc=_pr_auc(frame),
    )


def _scored(frame: pd.DataFrame) -> Optional[pd.DataFrame]:
    """Rows with a p_hate when both classes are present (else no curve exists)."""
    if "p_hate" not in frame:
        return None
    scored = frame[frame["p_hate"].notna()]
    return None if scored.empty or scored["true_label"].nunique() < 2 else scored


def _pr_auc(frame: pd.DataFrame) -> Optional[float]:
    """Area under the precision-recall curve as sklearn's average precision (no interpolation)."""
    scored = _scored(frame)
    if scored is None:
        return None
    return float(skm.average_precision_score(scored["true_label"] == POSITIVE, scored["p_hate"].astype(float)))


def _roc_auc(frame: pd.DataFrame) -> Optional[float]:
    if "p_hate" not in frame:
        return None
    scored = frame[frame["p_hate"].notna()]
    if scored.empty or scored["true_label"].nunique() < 2:
        return None
    return float(skm.roc_auc_score(scored["true_label"] == POSITIVE, scored["p_hate"].astype(float)))
