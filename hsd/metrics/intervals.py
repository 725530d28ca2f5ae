"""Bootstrap 95% intervals for a run's metrics, and paired intervals for differences of runs.

Why vectorised and not fairlearn's ``MetricFrame(n_boot=...)``: MetricFrame resamples the
whole data set without strata and recomputes every metric through pandas once per resample
(seconds per run). hsd draws its evaluation samples stratified by label x target group, so
the bootstrap mirrors that design: it resamples *within* each (group, label) stratum, keeping
every stratum's size fixed. Every metric is a function of confusion counts, so one
``np.bincount`` gives the counts of all resamples at once and 1000 resamples take
milliseconds. Point estimates are computed with scikit-learn / fairlearn elsewhere
(:mod:`hsd.metrics.summary`); ``check_point_estimates`` asserts that the formulas here give
the same numbers on the full sample, so the interval is always around the reported value.

Conventions (the same as the seed CSVs): positive class is ``hate``; a prediction outside
hate/normal (``unknown``) is left out of the confusion counts, and its rate is reported
beside them. Undefined rates (no answered negatives for an FPR) are NaN and ignored by the
quantiles. F1 is NaN only with no hate at all (no tp, fp, fn), as ``hsd.metrics.performance``
asks scikit-learn for (``zero_division=nan``); MCC with an empty denominator is 0, as
scikit-learn returns, and NaN when nothing was answered at all.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

TRUE = ("hate", "normal")
PRED = ("hate", "normal", "unknown")


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval."""

    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_json(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Sample3:
    """Per-sample codes: true label (0 hate, 1 normal), prediction (0 hate, 1 normal, 2 other), group."""

    true: np.ndarray
    pred: np.ndarray
    group: np.ndarray  # integer index into ``groups``
    groups: tuple[str, ...]


def encode(y_true: Sequence[str], y_pred: Sequence[str], group: Sequence[str]) -> Sample3:
    """Turn label strings into the integer codes the counting works on."""
    true = np.array([TRUE.index(t) for t in y_true], dtype=np.int64)
    pred = np.array([PRED.index(p) if p in PRED[:2] else 2 for p in y_pred], dtype=np.int64)
    groups = tuple(sorted(set(group)))
    gidx = np.array([groups.index(g) for g in group], dtype=np.int64)
    return Sample3(true, pred, gidx, groups)


# --------------------------------------------------------------------------------------
# Metrics of confusion counts. ``c`` has shape (..., 2, 3): [true, pred].
# --------------------------------------------------------------------------------------


def _div(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, empty)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _cells(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return c[..., 0, 0], c[..., 1, 1], c[..., 1, 0], c[..., 0, 1]  # tp, tn, fp, fn


def accuracy(c: np.ndarray) -> np.ndarray:
    tp, tn, fp, fn = _cells(c)
    return _div(tp + tn, tp + tn + fp + fn, np.nan)


def f1(c: np.ndarray) -> np.ndarray:
    tp, _, fp, fn = _cells(c)
    return _div(2 * tp, 2 * tp + fp + fn, np.nan)


def mcc(c: np.ndarray) -> np.ndarray:
    tp, tn, fp, fn = (x.astype(float) for x in _cells(c))
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.where(tp + tn + fp + fn > 0, _div(tp * tn - fp * fn, den, 0.0), np.nan)  # nothing answered: NaN


def fpr(c: np.ndarray) -> np.ndarray:
    _, tn, fp, _ = _cells(c)
    return _div(fp, fp + tn, np.nan)


def fnr(c: np.ndarray) -> np.ndarray:
    tp, _, _, fn = _cells(c)
    return _div(fn, fn + tp, np.nan)


def unknown_rate(c: np.ndarray) -> np.ndarray:
    return _div(c[..., :, 2].sum(-1), c.sum((-1, -2)), np.nan)


def equalized_odds_difference(gc: np.ndarray) -> np.ndarray:
    """fairlearn's definition: the larger of the max-min spreads of TPR and of FPR over groups.

    ``gc`` has shape (..., groups, 2, 3). Undefined rates are left out, as in
    :func:`hsd.metrics.fairness.equalized_odds`; NaN with fewer than two groups.
    """
    if gc.shape[-3] < 2:
        return np.full(gc.shape[:-3], np.nan)
    tpr = 1.0 - fnr(gc)
    f = fpr(gc)
    with warnings.catch_warnings():  # a resample without any defined rate gives NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = lambda r: np.nanmax(r, axis=-1) - np.nanmin(r, axis=-1)  # noqa: E731
        return np.fmax(spread(tpr), spread(f))


OVERALL: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "accuracy": accuracy, "f1": f1, "mcc": mcc, "unknown_rate": unknown_rate}
PER_GROUP: dict[str, Callable[[np.ndarray], np.ndarray]] = {"fpr": fpr, "fnr": fnr}


# --------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------


def resample_indices(strata: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) indices drawn with replacement *within* each stratum.

    Column j of every resample stays in sample j's stratum, so stratum sizes are fixed.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, strata.size), dtype=np.int64)
    for s in np.unique(strata):  # sorted: the draw order does not depend on input order
        members = np.flatnonzero(strata == s)
        out[:, members] = members[rng.integers(0, members.size, size=(n_resamples, members.size))]
    return out


def group_counts(data: Sample3, idx: np.ndarray | None = None) -> np.ndarray:
    """Confusion counts per group: shape (G, 2, 3), or (B, G, 2, 3) for a (B, n) index matrix."""
    n_groups = len(data.groups)
    cell = (data.group * 2 + data.true) * 3 + data.pred  # in [0, G*6)
    k = n_groups * 6
    if idx is None:
        return np.bincount(cell, minlength=k).reshape(n_groups, 2, 3)
    offset = np.arange(idx.shape[0])[:, None] * k
    flat = np.bincount((cell[idx] + offset).ravel(), minlength=idx.shape[0] * k)
    return flat.reshape(idx.shape[0], n_groups, 2, 3)


def strata_of(data: Sample3) -> np.ndarray:
    return data.group * 2 + data.true


def percentile_bounds(values: np.ndarray, level: float) -> tuple[float, float]:
    """The ``level`` percentile interval of bootstrap ``values`` (undefined resamples left out)."""
    alpha = (1.0 - level) / 2.0
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def statistics(gc: np.ndarray) -> dict[str, np.ndarray]:
    """Every statistic hsd gives an interval for, from per-group counts (..., G, 2, 3).

    Keys: the OVERALL names, ``eod`` (equalized-odds difference) and ``<metric>/<g index>``.
    """
    total = gc.sum(-3)
    out = {name: fn(total) for name, fn in OVERALL.items()}
    out["eod"] = equalized_odds_difference(gc)
    for name, fn in PER_GROUP.items():
        values = fn(gc)
        for g in range(gc.shape[-3]):
            out[f"{name}/{g}"] = values[..., g]
    return out


def bootstrap(data: Sample3, n_resamples: int, seed: int, level: float) -> dict[str, Interval]:
    """Stratified percentile-bootstrap intervals of :func:`statistics`, keyed like it.

    Per-group keys use the group *name*: ``fpr/lgbtq``.
    """
    point = statistics(group_counts(data))
    boot = statistics(group_counts(data, resample_indices(strata_of(data), n_resamples, seed)))
    return {_named(k, data.groups): Interval(float(point[k]), *percentile_bounds(boot[k], level)) for k in point}


def paired_bootstrap(a: Sample3, b: Sample3, n_resamples: int, seed: int,
                     level: float) -> dict[str, Interval]:
    """Intervals of ``statistic(b) - statistic(a)`` with the *same* resampled samples for both.

    ``a`` and ``b`` must describe the same samples in the same order (same true labels and
    groups); pairing removes the sample-to-sample variation both runs share, so a real
    difference is not drowned by the noise of which samples were drawn.
    """
    if not (np.array_equal(a.true, b.true) and np.array_equal(a.group, b.group) and a.groups == b.groups):
        raise ValueError("paired bootstrap needs the same samples (labels, groups) in the same order")
    idx = resample_indices(strata_of(a), n_resamples, seed)
    pa, pb = statistics(group_counts(a)), statistics(group_counts(b))
    ba, bb = statistics(group_counts(a, idx)), statistics(group_counts(b, idx))
    return {_named(k, a.groups): Interval(float(pb[k] - pa[k]), *percentile_bounds(bb[k] - ba[k], level)) for k in pa}


def _named(key: str, groups: tuple[str, ...]) -> str:
    if "/" not in key:
        return key
    name, g = key.split("/")
    return f"{name}/{groups[int(g)]}"


def check_point_estimates(intervals: dict[str, Interval], expected: dict[str, float], tol: float = 1e-9) -> None:
    """Fail loudly if the bootstrap's formulas disagree with the scikit-learn/fairlearn values."""
    for key, value in expected.items():
        got = intervals[key].estimate
        if not (np.isnan(got) and np.isnan(value)) and abs(got - value) > tol:
            raise AssertionError(f"bootstrap point estimate of {key} is {got}, scikit-learn/fairlearn say {value}")
