"""Bootstrap intervals: right point estimates, right coverage, stratification and pairing."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from hsd.metrics import intervals as iv

# Group sizes and class balance of the real test split; per-group error rates chosen unequal.
GROUPS = {"lgbtq": (170, 324), "mexican": (123, 86), "middle_east": (162, 144)}  # (hate, normal)
TRUE_FPR = {"lgbtq": 0.30, "mexican": 0.15, "middle_east": 0.25}
TRUE_FNR = {"lgbtq": 0.20, "mexican": 0.35, "middle_east": 0.10}
UNKNOWN = 0.03  # independent of everything: leaves the rates among answered samples unchanged


def _population() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    true, group = [], []
    for g, (pos, neg) in GROUPS.items():
        true += [0] * pos + [1] * neg
        group += [g] * (pos + neg)
    names = sorted(GROUPS)
    gidx = np.array([names.index(g) for g in group])
    return np.array(true), gidx, np.array(names)


def _draw(rng: np.random.Generator) -> iv.Sample3:
    true, gidx, names = _population()
    p_hate = np.where(true == 0, 1 - np.array([TRUE_FNR[n] for n in names])[gidx],
                      np.array([TRUE_FPR[n] for n in names])[gidx])
    pred = np.where(rng.random(true.size) < p_hate, 0, 1)
    pred = np.where(rng.random(true.size) < UNKNOWN, 2, pred)
    return iv.Sample3(true, pred, gidx, tuple(names))


def _truth() -> dict[str, float]:
    """Population values: the metrics of the *expected* confusion counts."""
    names = sorted(GROUPS)
    gc = np.zeros((len(names), 2, 3))
    for i, g in enumerate(names):
        pos, neg = GROUPS[g]
        gc[i, 0, 0], gc[i, 0, 1] = pos * (1 - TRUE_FNR[g]), pos * TRUE_FNR[g]
        gc[i, 1, 0], gc[i, 1, 1] = neg * TRUE_FPR[g], neg * (1 - TRUE_FPR[g])
    stats = iv.statistics(gc)
    return {iv._named(k, tuple(names)): float(v) for k, v in stats.items() if k != "unknown_rate"}


def test_coverage_is_about_95_percent():
    """Over 200 independent data sets, each statistic's 95% interval holds the truth ~95% of the time."""
    truth = _truth()
    rng = np.random.default_rng(2024)
    hits = {k: 0 for k in truth}
    draws = 200
    for d in range(draws):
        res = iv.bootstrap(_draw(rng), n_resamples=1000, seed=d, level=0.95)
        for k, v in truth.items():
            hits[k] += res[k].contains(v)
    coverage = {k: h / draws for k, h in hits.items()}
    # SE of a coverage estimate over 200 draws is ~0.015: 0.90..0.99 is a ~3-SE band.
    for k, c in coverage.items():
        assert 0.90 <= c <= 0.99, f"coverage of {k} is {c:.3f}: {coverage}"
    assert 0.93 <= np.mean(list(coverage.values())) <= 0.97, coverage


def test_a_wrong_truth_is_not_covered():
    """The test above can fail: intervals miss a value 0.1 away from the truth most of the time."""
    truth = _truth()
    rng = np.random.default_rng(7)
    misses = sum(not iv.bootstrap(_draw(rng), 1000, d, 0.95)["f1"].contains(truth["f1"] + 0.1) for d in range(20))
    assert misses >= 18


def test_point_estimates_equal_sklearn():
    rng = np.random.default_rng(0)
    data = _draw(rng)
    res = iv.bootstrap(data, 1000, 0, 0.95)
    answered = data.pred != 2
    t = np.array(iv.TRUE)[data.true[answered]]
    p = np.array(iv.PRED)[data.pred[answered]]
    assert res["f1"].estimate == pytest.approx(f1_score(t, p, pos_label="hate"), abs=1e-12)
    assert res["mcc"].estimate == pytest.approx(matthews_corrcoef(t, p), abs=1e-12)
    assert res["accuracy"].estimate == pytest.approx(accuracy_score(t, p), abs=1e-12)
    assert res["unknown_rate"].estimate == pytest.approx((~answered).mean(), abs=1e-12)
    for gi, g in enumerate(data.groups):
        m = data.group[answered] == gi
        neg, pos = t[m] == "normal", t[m] == "hate"
        assert res[f"fpr/{g}"].estimate == pytest.approx((p[m][neg] == "hate").mean(), abs=1e-12)
        assert res[f"fnr/{g}"].estimate == pytest.approx((p[m][pos] == "normal").mean(), abs=1e-12)
    for v in res.values():
        assert v.low <= v.estimate <= v.high or np.isnan(v.estimate)


def test_degenerate_scores_follow_sklearn():
    """No positive predictions: F1 and MCC are 0 (scikit-learn's value), not NaN."""
    c = np.array([[0, 5, 0], [0, 7, 0]])
    assert iv.f1(c) == 0.0 and iv.mcc(c) == 0.0
    assert f1_score(["hate"] * 5 + ["normal"] * 7, ["normal"] * 12, pos_label="hate", zero_division=0) == 0.0


def test_resampling_keeps_strata_sizes_and_is_seeded():
    strata = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    a = iv.resample_indices(strata, 50, seed=3)
    assert np.array_equal(a, iv.resample_indices(strata, 50, seed=3))
    assert not np.array_equal(a, iv.resample_indices(strata, 50, seed=4))
    assert (strata[a] == strata[None, :]).all()


def test_paired_interval_of_identical_runs_is_zero_and_of_a_better_run_excludes_zero():
    rng = np.random.default_rng(1)
    a = _draw(rng)
    same = iv.paired_bootstrap(a, a, 1000, 0, 0.95)
    assert same["f1"].estimate == same["f1"].low == same["f1"].high == 0.0
    # b: a copy of a with 15 wrong answers on hate samples corrected (F1 +~0.02)
    pred = a.pred.copy()
    wrong = np.flatnonzero((a.true == 0) & (a.pred == 1))[:15]
    pred[wrong] = 0
    b = iv.Sample3(a.true, pred, a.group, a.groups)
    diff = iv.paired_bootstrap(a, b, 1000, 0, 0.95)
    assert diff["f1"].low > 0
    # unpaired intervals of the two runs overlap: pairing is what resolves the difference
    ra, rb = iv.bootstrap(a, 1000, 0, 0.95), iv.bootstrap(b, 1000, 1, 0.95)
    assert ra["f1"].high > rb["f1"].low


def test_paired_bootstrap_refuses_different_samples():
    rng = np.random.default_rng(1)
    a = _draw(rng)
    b = iv.Sample3(a.true[::-1].copy(), a.pred, a.group, a.groups)
    with pytest.raises(ValueError, match="same samples"):
        iv.paired_bootstrap(a, b, 10, 0, 0.95)
