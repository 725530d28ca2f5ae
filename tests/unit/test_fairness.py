"""Per-group rates through fairlearn agree with the seed CSVs' numbers; equalized odds; flags."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fairlearn.metrics import equalized_odds_difference

from hsd.metrics import fairness
from hsd.metrics.bias import compute_bias
from hsd.records import Record


def _data(seed: int = 0, n: int = 400):
    rng = np.random.default_rng(seed)
    t = rng.choice(["hate", "normal"], n)
    p = rng.choice(["hate", "normal", "unknown"], n, p=[0.45, 0.45, 0.10])
    g = rng.choice(["lgbtq", "mexican", "middle_east"], n)
    return t, p, g


def test_group_table_equals_compute_bias():
    t, p, g = _data()
    table = fairness.group_table(t, p, g)
    records = [Record(str(i), "x", a, c, c, "s", "st", "h", "", b, None, "ok", 0.0) for i, (a, b, c) in enumerate(zip(t, p, g))]
    for m in compute_bias(records):
        row = table.loc[m.group]
        assert row.samples == m.sample_count and row.unknown == m.unknown_count
        assert (row.true_positive, row.true_negative, row.false_positive, row.false_negative) == (
            m.true_positive, m.true_negative, m.false_positive, m.false_negative)
        assert row.fpr == pytest.approx(m.false_positive_rate) and row.fnr == pytest.approx(m.false_negative_rate)
        assert row.positives == m.true_positive + m.false_negative


def test_equalized_odds_equals_fairlearn_when_every_rate_is_defined():
    t, p, g = _data(1)
    a = np.isin(p, ["hate", "normal"])
    expected = equalized_odds_difference((t[a] == "hate").astype(int), (p[a] == "hate").astype(int),
                                         sensitive_features=g[a])
    assert fairness.equalized_odds(fairness.group_table(t, p, g)) == pytest.approx(expected, abs=1e-12)


def test_an_undefined_rate_is_nan_and_left_out_of_equalized_odds():
    t = np.array(["hate", "normal", "hate", "normal", "normal", "normal"])
    p = np.array(["hate", "hate", "normal", "normal", "hate", "normal"])
    g = np.array(["a", "a", "a", "a", "b", "b"])  # group b has no hate samples: its FNR/TPR do not exist
    table = fairness.group_table(t, p, g)
    assert math.isnan(table.loc["b", "fnr"]) and table.loc["b", "fpr"] == 0.5
    # TPR spread over group a only (0); FPR spread |0.5 - 0.5| = 0
    assert fairness.equalized_odds(table) == 0.0
    assert math.isnan(fairness.equalized_odds(table.loc[["a"]]))


def test_small_groups_are_flagged():
    t, p, g = _data(2, n=300)
    table = fairness.group_table(t, p, g)
    flags = fairness.small_groups(table, min_class_count=40)
    flagged = {f.group for f in flags}
    assert flagged == {grp for grp, r in table.iterrows() if min(r.positives, r.negatives) < 40}
    assert flags and "fewer than 40" in flags[0].message()
    assert fairness.small_groups(table, min_class_count=1) == []
