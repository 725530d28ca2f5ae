"""Bias AUCs (hsd.metrics.bias_auc) against scikit-learn on subsets built here, independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hsd.metrics import bias_auc, intervals
from hsd.records import Record
from hsd.reporting.score_report import auc_cell, changes

GROUPS = ("lgbtq", "mexican", "middle_east")


def _records(n: int = 300, seed: int = 0, shift: float = 0.25, groups=GROUPS, hate_in=None) -> list[Record]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        g = groups[i % len(groups)]
        hate = bool(rng.random() < 0.5) if hate_in is None else hate_in.get(g, bool(rng.random() < 0.5))
        p = float(np.clip(rng.normal(0.5 + (shift if hate else -shift), 0.2), 0, 1))
        out.append(Record(f"s{i:04d}", "t", "hate" if hate else "normal", g, g, "x", "s", "h", "", "hate", None,
                          "ok_score", 0.0, p_hate=round(p, 2)))  # rounded: ties, as a real model's scores have
    return out


def _sklearn_by_hand(records: list[Record]) -> dict[str, float]:
    """Each AUC from the definition: the subset picked by a list comprehension, scikit-learn's AUC."""
    def auc(rows):
        y = [r.true_label == "hate" for r in rows]
        return roc_auc_score(y, [r.p_hate for r in rows]) if 0 < sum(y) < len(y) else math.nan

    out = {"overall_auc": auc(records)}
    for g in sorted({r.target_group for r in records}):
        hate = lambda r: r.true_label == "hate"  # noqa: E731
        out[f"subgroup_auc/{g}"] = auc([r for r in records if r.target_group == g])
        out[f"bpsn_auc/{g}"] = auc([r for r in records if (r.target_group != g and hate(r))
                                    or (r.target_group == g and not hate(r))])
        out[f"bnsp_auc/{g}"] = auc([r for r in records if (r.target_group != g and not hate(r))
                                    or (r.target_group == g and hate(r))])
    return out


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-12


def test_every_auc_equals_sklearn_on_its_subset():
    records = _records()
    got = bias_auc.summarize(records, 200, 0, 0.95)
    want = _sklearn_by_hand(records)
    assert _close(got["overall_auc"]["estimate"], want["overall_auc"])
    for row in got["groups"]:
        for metric in bias_auc.SUBMETRICS:
            assert _close(row[metric]["estimate"], want[f"{metric}/{row['group']}"]), (row["group"], metric)
            assert row[metric]["low"] <= row[metric]["estimate"] <= row[metric]["high"]


def test_bootstrap_resamples_equal_sklearn_on_the_resampled_subsets():
    """The vectorised rank formula of the bootstrap, checked resample by resample."""
    records = _records(120, seed=3)
    data = bias_auc.scored(records)
    idx = intervals.resample_indices(data.strata, 5, seed=7)
    boot = bias_auc.statistics(data, data.p[idx])
    for b in range(5):
        resampled = [Record(**{**records_by_id(records)[k].to_json(), "sample_id": f"r{j}",
                               "p_hate": float(data.p[idx[b, j]])}) for j, k in enumerate(sorted_ids(records))]
        want = _sklearn_by_hand(resampled)
        for key, value in want.items():
            assert _close(float(boot[key][b]), value), (b, key)


def records_by_id(records):
    return {r.sample_id: r for r in records}


def sorted_ids(records):
    return sorted(r.sample_id for r in records)


def test_generalized_mean_and_final_score_by_hand():
    assert bias_auc.power_mean(np.array([0.8, 0.6, 0.9])) == pytest.approx(
        ((0.8 ** -5 + 0.6 ** -5 + 0.9 ** -5) / 3) ** (-1 / 5), abs=1e-12)
    assert bias_auc.power_mean(np.array([0.8, math.nan, 0.9])) == pytest.approx(
        ((0.8 ** -5 + 0.9 ** -5) / 2) ** (-1 / 5), abs=1e-12)  # an undefined group is left out
    assert float(bias_auc.power_mean(np.array([0.0, 0.9]))) == 0.0
    got = bias_auc.summarize(_records(seed=5), 50, 0, 0.95)
    want = _sklearn_by_hand(_records(seed=5))
    means = []
    for metric in bias_auc.SUBMETRICS:
        vals = [want[f"{metric}/{g}"] for g in GROUPS]
        means.append((sum(v ** -5 for v in vals) / len(vals)) ** (-1 / 5))
        assert got["generalized_mean"][metric]["estimate"] == pytest.approx(means[-1], abs=1e-12)
    final = 0.25 * want["overall_auc"] + 0.25 * sum(means)
    assert got["final_score"]["estimate"] == pytest.approx(final, abs=1e-12)


def test_group_without_hate_is_undefined_not_zero():
    records = _records(hate_in={"mexican": False})
    got = bias_auc.summarize(records, 100, 0, 0.95)
    mex = next(g for g in got["groups"] if g["group"] == "mexican")
    assert mex["positives"] == 0
    assert math.isnan(mex["subgroup_auc"]["estimate"]) and math.isnan(mex["bnsp_auc"]["estimate"])
    assert mex["subgroup_auc_undefined"] == mex["bnsp_auc_undefined"] == "no hate samples in group"
    assert mex["bpsn_auc_undefined"] is None and _close(mex["bpsn_auc"]["estimate"],
                                                        _sklearn_by_hand(records)["bpsn_auc/mexican"])
    assert auc_cell(mex, "subgroup_auc") == "n/a (no hate samples in group)"
    others = [g["subgroup_auc"]["estimate"] for g in got["groups"] if g["group"] != "mexican"]
    assert got["generalized_mean"]["subgroup_auc"]["estimate"] == pytest.approx(
        (sum(v ** -5 for v in others) / 2) ** (-1 / 5), abs=1e-12)


def test_no_hate_anywhere_and_no_scores():
    records = _records(60, hate_in={g: False for g in GROUPS})
    got = bias_auc.summarize(records, 50, 0, 0.95)
    assert math.isnan(got["overall_auc"]["estimate"]) and math.isnan(got["final_score"]["estimate"])
    assert {g["bpsn_auc_undefined"] for g in got["groups"]} == {"no hate samples in the other groups"}
    unscored = [Record(**{**r.to_json(), "p_hate": None}) for r in records]
    assert bias_auc.summarize(unscored, 50, 0, 0.95) is None


def test_paired_differences_and_the_words():
    a, b = _records(seed=1, shift=0.25), _records(seed=1, shift=0.25)
    same = bias_auc.paired(a, a, 100, 0, 0.95)
    assert all(v["estimate"] == 0 for v in same.values())
    # b: lgbtq's harmless posts now score like hate -> its BPSN AUC falls beyond noise
    b = [Record(**{**r.to_json(), "p_hate": 0.95}) if r.target_group == "lgbtq" and r.true_label == "normal" else r
         for r in b]
    d = bias_auc.paired(a, b, 300, 0, 0.95)
    assert d["bpsn_auc/lgbtq"]["high"] < 0
    want = _sklearn_by_hand(b)["bpsn_auc/lgbtq"] - _sklearn_by_hand(a)["bpsn_auc/lgbtq"]
    assert d["bpsn_auc/lgbtq"]["estimate"] == pytest.approx(want, abs=1e-12)
    before, after = bias_auc.summarize(a, 100, 0, 0.95), bias_auc.summarize(b, 100, 0, 0.95)
    words = changes("base", "tuned", before, after, d)
    line = next(w for w in words if w.startswith("BPSN AUC for lgbtq fell"))
    assert "`tuned` confuses harmless lgbtq posts with hate more" in line and "interval excludes 0" in line
