"""Threshold-free bias metrics per target group: Subgroup, BPSN and BNSP AUC (Borkan et al. 2019).

Per-group FPR/FNR (:mod:`hsd.metrics.fairness`) depend on one threshold; the Jigsaw Unintended
Bias benchmark's metrics use the score P(hate) and no threshold. For a group g, with the
"background" = every other group:

* **Subgroup AUC** - ROC-AUC over g's samples only: does the model separate hate about g from
  harmless posts about g?
* **BPSN AUC** (background positive, subgroup negative) - hate about other groups vs harmless
  posts about g. Low: harmless posts that mention g score like hate (false alarms on g).
* **BNSP AUC** (background negative, subgroup positive) - harmless posts about other groups vs
  hate about g. Low: hate against g scores like harmless text (g's hate is missed).

Each submetric is summarised over groups by the generalized (power) mean with p = -5, which
weighs the worst group most, and the final bias score is
``w * overall AUC + (1 - w) / 3 * sum of the three means`` with w = 0.25 - the benchmark's
formula with every weight 0.25. A group whose subset lacks hate or normal samples has no AUC
(NaN, reported "n/a" with the reason); the means are taken over the groups that have one.

Only samples with a ``p_hate`` count (score mode: all; generate mode: those whose answer's label
token had a probability, see :mod:`hsd.inference.label_scores`). Point estimates are scikit-learn's
``roc_auc_score`` on each subset; the bootstrap (the strata of :mod:`hsd.metrics.intervals`:
target group x true label, sizes fixed) computes the same AUCs by the rank-sum formula for all
resamples at once, and the point values are checked against scikit-learn's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from hsd.metrics import intervals
from hsd.records import POSITIVE, Record

SUBMETRICS = ("subgroup_auc", "bpsn_auc", "bnsp_auc")
POWER = -5.0
OVERALL_WEIGHT = 0.25
# why a subset has no AUC: which of its two parts has no samples of which class
_MISSING = {"subgroup_auc": (("no hate samples in group", "in", True), ("no normal samples in group", "in", False)),
            "bpsn_auc": (("no hate samples in the other groups", "out", True),
                         ("no normal samples in group", "in", False)),
            "bnsp_auc": (("no normal samples in the other groups", "out", False),
                         ("no hate samples in group", "in", True))}


@dataclass(frozen=True)
class Scored:
    """The samples that have a score: hate (bool), P(hate), group index into ``groups``."""

    y: np.ndarray
    p: np.ndarray
    group: np.ndarray
    groups: tuple[str, ...]

    @property
    def strata(self) -> np.ndarray:
        return self.group * 2 + self.y.astype(np.int64)


def has_score(r: Record) -> bool:
    return r.p_hate is not None and r.p_hate == r.p_hate  # NaN is no score


def scored(records: Sequence[Record]) -> Optional[Scored]:
    """The records with a p_hate, sorted by sample id (None when there are none)."""
    rows = sorted((r for r in records if has_score(r)), key=lambda r: r.sample_id)
    if not rows:
        return None
    groups = tuple(sorted({r.target_group for r in rows}))
    return Scored(np.array([r.true_label == POSITIVE for r in rows]), np.array([float(r.p_hate) for r in rows]),
                  np.array([groups.index(r.target_group) for r in rows], dtype=np.int64), groups)


def subset(y: np.ndarray, group: np.ndarray, g: int, metric: str) -> np.ndarray:
    """Boolean mask of the samples ``metric`` is computed over for group index ``g``."""
    inside = group == g
    if metric == "subgroup_auc":
        return inside
    if metric == "bpsn_auc":
        return (~inside & y) | (inside & ~y)
    if metric == "bnsp_auc":
        return (~inside & ~y) | (inside & y)
    raise ValueError(f"unknown bias AUC {metric!r}; valid: {', '.join(SUBMETRICS)}")


def undefined_reason(data: Scored, g: int, metric: str) -> Optional[str]:
    """Why ``metric`` has no value for group ``g`` (a class is missing from its subset), else None."""
    inside = data.group == g
    for reason, part, label in _MISSING[metric]:
        where = inside if part == "in" else ~inside
        if not (where & (data.y == label)).any():
            return reason
    return None


def rank_auc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of ``scores`` (shape (..., n)) against the fixed labels ``y`` (n,),
    by the Mann-Whitney rank sum with average ranks for ties (what ``roc_auc_score`` equals)."""
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return np.full(scores.shape[:-1], np.nan)
    ranks = rankdata(scores, axis=-1)
    return (ranks[..., y].sum(-1) - pos * (pos + 1) / 2) / (pos * neg)


def power_mean(values: np.ndarray, p: float = POWER) -> np.ndarray:
    """Generalized mean over the last axis, ignoring NaN (groups without the AUC); NaN if none.
    A zero AUC makes the mean 0 (0**-5 is infinite), as the definition's limit says."""
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample is NaN, not a warning
        return np.nanmean(values ** p, axis=-1) ** (1.0 / p)


def final_score(overall: np.ndarray, means: Sequence[np.ndarray]) -> np.ndarray:
    return OVERALL_WEIGHT * overall + (1.0 - OVERALL_WEIGHT) / len(means) * sum(means)


def statistics(data: Scored, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Every bias-AUC statistic for ``scores`` of shape (..., n) (the samples' scores, resampled
    within strata so that column j keeps sample j's label and group). Keys: ``overall_auc``,
    ``<submetric>/<group>``, ``mean/<submetric>``, ``final_score``."""
    out = {"overall_auc": rank_auc(data.y, scores)}
    for metric in SUBMETRICS:
        per_group = []
        for g, name in enumerate(data.groups):
            mask = subset(data.y, data.group, g, metric)
            out[f"{metric}/{name}"] = rank_auc(data.y[mask], scores[..., mask])
            per_group.append(out[f"{metric}/{name}"])
        out[f"mean/{metric}"] = power_mean(np.stack(per_group, axis=-1))
    out["final_score"] = final_score(out["overall_auc"], [out[f"mean/{m}"] for m in SUBMETRICS])
    return out


def sklearn_values(data: Scored) -> dict[str, float]:
    """The AUCs of :func:`statistics` computed by scikit-learn on each subset (NaN where undefined)."""
    def auc(mask: np.ndarray) -> float:
        y = data.y[mask]
        return float(roc_auc_score(y, data.p[mask])) if 0 < y.sum() < y.size else float("nan")

    out = {"overall_auc": auc(np.ones_like(data.y))}
    for metric in SUBMETRICS:
        for g, name in enumerate(data.groups):
            out[f"{metric}/{name}"] = auc(subset(data.y, data.group, g, metric))
    return out


def bootstrap(data: Scored, n_resamples: int, seed: int, level: float) -> dict[str, intervals.Interval]:
    point = {k: float(v) for k, v in statistics(data, data.p).items()}
    intervals.check_point_estimates({k: intervals.Interval(v, v, v) for k, v in point.items()},
                                    sklearn_values(data), tol=1e-9)
    idx = intervals.resample_indices(data.strata, n_resamples, seed)
    boot = statistics(data, data.p[idx])
    return {k: intervals.Interval(point[k], *intervals.percentile_bounds(boot[k], level)) for k in point}


def summarize(records: Sequence[Record], n_resamples: int, seed: int, level: float) -> Optional[dict[str, Any]]:
    """The bias-AUC block of a run's metrics (None when no sample has a score)."""
    data = scored(records)
    if data is None:
        return None
    ivs = bootstrap(data, n_resamples, seed, level)
    rows = []
    for g, name in enumerate(data.groups):
        inside = data.group == g
        row: dict[str, Any] = {"group": name, "scored": int(inside.sum()), "positives": int((inside & data.y).sum()),
                               "negatives": int((inside & ~data.y).sum())}
        for metric in SUBMETRICS:
            row[metric] = ivs[f"{metric}/{name}"].to_json()
            row[f"{metric}_undefined"] = undefined_reason(data, g, metric)
        rows.append(row)
    return {"n_scored": int(data.y.size), "power": POWER, "overall_weight": OVERALL_WEIGHT,
            "overall_auc": ivs["overall_auc"].to_json(), "groups": rows,
            "generalized_mean": {m: ivs[f"mean/{m}"].to_json() for m in SUBMETRICS},
            "final_score": ivs["final_score"].to_json()}


def paired(a: Sequence[Record], b: Sequence[Record], n_resamples: int, seed: int,
           level: float) -> Optional[dict[str, dict[str, float]]]:
    """Intervals of ``statistic(b) - statistic(a)`` over the samples both runs scored, with the same
    resamples for both (keys as :func:`statistics`); None when they share no scored sample."""
    pa = {r.sample_id: r for r in a if has_score(r)}
    pb = {r.sample_id: r for r in b if has_score(r)}
    common = sorted(pa.keys() & pb.keys())
    if not common:
        return None
    da, db = scored([pa[i] for i in common]), scored([pb[i] for i in common])
    idx = intervals.resample_indices(da.strata, n_resamples, seed)
    point = {k: float(v) for k, v in statistics(db, db.p).items()}
    base = statistics(da, da.p)
    boot_b, boot_a = statistics(db, db.p[idx]), statistics(da, da.p[idx])
    bounds = {k: intervals.percentile_bounds(boot_b[k] - boot_a[k], level) for k in point}
    return {k: intervals.Interval(point[k] - float(base[k]), *bounds[k]).to_json() for k in point}
