"""Is P(hate) a probability? Expected calibration error and reliability bins, overall and per group.

The score is read as a probability of the class ``hate`` (binary calibration, not the
confidence of the top label): samples are put in ``N_BINS`` **equal-width** bins of P(hate)
((0, 0.1], (0.1, 0.2], ..., the first bin including 0, scikit-learn's ``calibration_curve``
binning with ``strategy="uniform"``), and in each bin the mean P(hate) is compared with the
fraction of samples that are hate. ECE = sum over bins of (bin size / n) x |fraction hate -
mean P(hate)|. Equal-width and not equal-mass because a model that puts most samples near 0 or 1
(gpt-oss in score mode does) should show its empty middle, and because the per-group bins of
~100-300 samples would otherwise differ from group to group. Bin points come from scikit-learn.

Also the decision threshold: the one that maximises F1 (or Youden's J, ``inference.threshold_metric``)
on the validation split, applied unchanged to the test split, next to the default 0.5 - the rule
``inference.threshold_from`` uses when a score-mode run labels its samples, so a report and a run
never pick thresholds differently.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from hsd.metrics.bias_auc import Scored, scored
from hsd.records import Record

N_BINS = 10
DEFAULT_THRESHOLD = 0.5
THRESHOLD_METRICS = ("f1", "youden")
RULES = {"f1": "the P(hate) threshold with the highest F1 of the hate class (hate when P(hate) >= threshold)",
         "youden": "the P(hate) threshold with the highest Youden's J = TPR - FPR (hate when P(hate) >= threshold)"}


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    """Equal-width bins: each non-empty bin's edges, count, mean P(hate), fraction hate; the ECE."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=n_bins)  # calibration_curve's binning
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="uniform", pos_label=True)
    filled = np.flatnonzero(counts)
    weights = counts[filled] / p.size
    bins = [{"low": round(float(edges[k]), 10), "high": round(float(edges[k + 1]), 10), "count": int(counts[k]),
             "mean_p_hate": float(mp), "fraction_hate": float(fo)}
            for k, mp, fo in zip(filled, predicted, observed)]
    return {"n": int(p.size), "ece": float(np.sum(weights * np.abs(observed - predicted))), "bins": bins}


def summarize(records: Sequence[Record]) -> Optional[dict[str, Any]]:
    """Reliability and ECE of all scored samples and of each group's (None without scores)."""
    data = scored(records)
    if data is None:
        return None
    groups = {name: reliability(data.y[data.group == g], data.p[data.group == g])
              for g, name in enumerate(data.groups)}
    return {"n_bins": N_BINS, "binning": "equal-width", "overall": reliability(data.y, data.p), "groups": groups}


def best_threshold(y_true: Sequence[bool], p_hate: Sequence[float], metric: str = "f1") -> Optional[float]:
    """The P(hate) cut (hate iff p >= cut) maximising ``metric`` (``f1`` of the hate class, or
    ``youden``: J = TPR - FPR) over the observed probabilities (scikit-learn's curves); ties go to
    the higher cut. None when the samples hold one class only (no cut is better than another)."""
    y, p = np.asarray(y_true, dtype=bool), np.asarray(p_hate, dtype=float)
    if y.all() or not y.any():
        return None
    if metric == "f1":
        precision, recall, cuts = skm.precision_recall_curve(y, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)[:-1]
        best = np.flatnonzero(f1 == f1.max())[-1]
    elif metric == "youden":
        fpr, tpr, cuts = skm.roc_curve(y, p)
        j = (tpr - fpr)[1:]  # the first point is the "predict nothing" cut (inf)
        cuts = cuts[1:]
        best = np.flatnonzero(j == j.max())[0]  # roc cuts descend: the first is the highest
    else:
        raise ValueError(f"threshold metric must be one of {', '.join(THRESHOLD_METRICS)}, got {metric!r}")
    return float(cuts[best])


def at_threshold(data: Scored, threshold: float) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 and MCC of ``P(hate) >= threshold`` (scikit-learn)."""
    pred = data.p >= threshold
    zero = {"zero_division": np.nan}
    return {"threshold": float(threshold), "n": int(data.y.size),
            "accuracy": float(skm.accuracy_score(data.y, pred)),
            "precision": float(skm.precision_score(data.y, pred, **zero)),
            "recall": float(skm.recall_score(data.y, pred, **zero)),
            "f1": float(skm.f1_score(data.y, pred, **zero)), "mcc": float(skm.matthews_corrcoef(data.y, pred))}


def own_threshold(records: Sequence[Record], metric: str = "f1") -> Optional[dict[str, Any]]:
    """The threshold this run's own samples pick, and the metrics there and at 0.5 (in-sample: the
    F1 at a threshold picked on the same samples is optimistic)."""
    data = scored(records)
    t = None if data is None else best_threshold(data.y, data.p, metric)
    if t is None:
        return None
    return {"rule": RULES[metric], "picked": at_threshold(data, t), "default": at_threshold(data, DEFAULT_THRESHOLD)}


def transfer(validation: Sequence[Record], test: Sequence[Record], metric: str = "f1") -> Optional[dict[str, Any]]:
    """The threshold the validation run picks, applied to the test run's scores (and 0.5 beside it)."""
    val, tst = scored(validation), scored(test)
    t = None if val is None or tst is None else best_threshold(val.y, val.p, metric)
    if t is None:
        return None
    return {"rule": RULES[metric], "validation_f1": at_threshold(val, t)["f1"],
            "picked": at_threshold(tst, t), "default": at_threshold(tst, DEFAULT_THRESHOLD)}
