"""Calibration (ECE, reliability bins) and the validation-picked threshold, by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from _report_helpers import make_dataset, make_run
from hsd.metrics import calibration
from hsd.metrics.bias_auc import scored
from hsd.records import Record
from hsd.reporting.rundata import load_run, threshold_transfer


def _rec(i: int, hate: bool, p: float, group: str = "lgbtq") -> Record:
    return Record(f"s{i:03d}", "t", "hate" if hate else "normal", group, group, "x", "s", "h", "", "hate", None,
                  "ok_score", 0.0, p_hate=p)


def test_ece_by_hand():
    # bins (10 equal-width): 0.05 and 0.1 -> [0, 0.1]; 0.15 x2 -> (0.1, 0.2]; 0.85 -> (0.8, 0.9]; 0.95 -> (0.9, 1]
    p = np.array([0.05, 0.1, 0.15, 0.15, 0.85, 0.95])
    y = np.array([False, True, True, False, True, True])
    rel = calibration.reliability(y, p)
    # |fraction hate - mean p| per bin, weighted by bin share
    want = (2 * abs(0.5 - 0.075) + 2 * abs(0.5 - 0.15) + abs(1 - 0.85) + abs(1 - 0.95)) / 6
    assert rel["ece"] == pytest.approx(want, abs=1e-12)
    assert [(b["low"], b["high"], b["count"]) for b in rel["bins"]] == [(0.0, 0.1, 2), (0.1, 0.2, 2), (0.8, 0.9, 1),
                                                                         (0.9, 1.0, 1)]
    assert rel["bins"][0]["mean_p_hate"] == pytest.approx(0.075) and rel["bins"][0]["fraction_hate"] == 0.5


def test_per_group_calibration():
    recs = [_rec(0, True, 0.9), _rec(1, False, 0.1), _rec(2, True, 0.3, "mexican"), _rec(3, False, 0.3, "mexican")]
    cal = calibration.summarize(recs)
    assert cal["groups"]["lgbtq"]["ece"] == pytest.approx(0.1)  # 0.9 vs 1, 0.1 vs 0
    assert cal["groups"]["mexican"]["ece"] == pytest.approx(0.2)  # one bin: mean 0.3, half hate
    assert cal["overall"]["n"] == 4 and cal["n_bins"] == 10 and cal["binning"] == "equal-width"


def test_threshold_maximises_f1_and_transfers():
    val = [_rec(i, h, p) for i, (h, p) in enumerate([(True, 0.9), (True, 0.4), (False, 0.35), (False, 0.1),
                                                     (True, 0.6), (False, 0.7)])]
    data = scored(val)
    t = calibration.best_threshold(data.y, data.p)
    grid = sorted(set(data.p))
    best = max(f1_score(data.y, data.p >= c) for c in grid)
    assert t == 0.4 and f1_score(data.y, data.p >= t) == pytest.approx(best)
    test = [_rec(i, h, p) for i, (h, p) in enumerate([(True, 0.45), (False, 0.42), (True, 0.2), (False, 0.05)])]
    out = calibration.transfer(val, test)
    assert out["picked"]["threshold"] == 0.4
    assert out["picked"]["f1"] == pytest.approx(f1_score([1, 0, 1, 0], [1, 1, 0, 0]))
    assert out["default"]["f1"] == 0.0  # nothing reaches 0.5 in test
    assert calibration.best_threshold([False], [0.3]) is None
    assert calibration.own_threshold([_rec(0, False, 0.3)]) is None


def test_collate_finds_the_validation_run(tmp_path):
    data = make_dataset(tmp_path / "data")
    exp = tmp_path / "exp"
    test_run = make_run(exp, "test_run", data, "rich", 0.8, 0.0, seed=1, scored=True)
    alone = threshold_transfer(load_run(test_run))
    assert alone["validation_run"] is None and "only the test split is present" in alone["note"]
    make_run(exp, "val_run", data, "rich", 0.8, 0.0, seed=2, scored=True, split="val")
    make_run(exp, "val_other_template", data, "simple", 0.8, 0.0, seed=3, scored=True, split="val")
    got = threshold_transfer(load_run(test_run))
    assert got["validation_run"] == "val_run"
    want = calibration.transfer(load_run(exp / "val_run").records, load_run(test_run).records)
    assert got["picked"] == want["picked"]
    assert "validation split" in threshold_transfer(load_run(exp / "val_run"))["note"]
