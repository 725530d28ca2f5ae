"""hsd.metrics.performance / bias: equal to scikit-learn on the same labels and to hand counts."""

from __future__ import annotations

import math
import random

import pytest
from sklearn import metrics as skm

from hsd.metrics.bias import compute_bias
from hsd.metrics.frame import to_frame
from hsd.metrics.performance import HEADLINE, compute_performance, policy_labels
from hsd.records import Record


def rec(i, true, pred, group="lgbtq", p_hate=None) -> Record:
    return Record(sample_id=str(i), text=f"t{i}", true_label=true, target_group=group, persona_tag=group.upper(),
                  source="src", strategy="s", prompt_hash="h", raw_response="", predicted_label=pred,
                  rationale=None, parse_status="ok_json" if pred != "unknown" else "no_final_answer",
                  latency_s=0.1, p_hate=p_hate)


# Hand-countable set. lgbtq: TP TN FP FN + unknown(hate); mexican: TP TP FN + unknown(normal) + TN
HAND = [
    rec(0, "hate", "hate"), rec(1, "normal", "normal"), rec(2, "normal", "hate"), rec(3, "hate", "normal"),
    rec(4, "hate", "unknown"),
    rec(5, "hate", "hate", "mexican"), rec(6, "hate", "hate", "mexican"), rec(7, "hate", "normal", "mexican"),
    rec(8, "normal", "unknown", "mexican"), rec(9, "normal", "normal", "mexican"),
]


def test_hand_counts_answered_and_strict():
    perf = compute_performance(HAND)
    a, s = perf.answered, perf.strict
    assert (perf.n_samples, perf.unknown_count, perf.unknown_rate) == (10, 2, 0.2)
    assert (a.n, a.true_positive, a.true_negative, a.false_positive, a.false_negative) == (8, 3, 2, 1, 2)
    assert a.accuracy == 5 / 8 and a.precision == 3 / 4 and a.recall == 3 / 5
    assert a.f1_score == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    # strict: the unknown hate sample is a FN, the unknown normal sample a FP
    assert (s.n, s.true_positive, s.true_negative, s.false_positive, s.false_negative) == (10, 3, 2, 2, 3)
    assert s.accuracy == 5 / 10 and s.precision == 3 / 5 and s.recall == 3 / 6
    assert perf.headline is getattr(perf, HEADLINE) is perf.answered


def test_hand_counts_per_group():
    lgbtq, mexican = compute_bias(HAND)
    assert (lgbtq.group, lgbtq.sample_count, lgbtq.unknown_count) == ("lgbtq", 5, 1)
    assert (lgbtq.true_positive, lgbtq.true_negative, lgbtq.false_positive, lgbtq.false_negative) == (1, 1, 1, 1)
    assert lgbtq.false_positive_rate == 0.5 and lgbtq.false_negative_rate == 0.5
    assert lgbtq.strict_false_positive_rate == 0.5 and lgbtq.strict_false_negative_rate == 2 / 3
    assert (mexican.sample_count, mexican.unknown_count) == (5, 1)
    assert (mexican.true_positive, mexican.true_negative, mexican.false_positive, mexican.false_negative) == (2, 1, 0, 1)
    assert mexican.false_positive_rate == 0.0 and mexican.false_negative_rate == 1 / 3
    assert mexican.strict_false_positive_rate == 0.5 and mexican.strict_false_negative_rate == 1 / 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_sklearn(seed):
    rng = random.Random(seed)
    records = [rec(i, rng.choice(["hate", "normal"]), rng.choice(["hate", "normal", "normal", "unknown"]),
                   rng.choice(["lgbtq", "mexican", "middle_east"]), rng.random()) for i in range(300)]
    perf = compute_performance(records)
    for policy, scores in (("answered", perf.answered), ("strict", perf.strict)):
        if policy == "answered":
            pairs = [(r.true_label, r.predicted_label) for r in records if r.predicted_label != "unknown"]
        else:
            wrong = {"hate": "normal", "normal": "hate"}
            pairs = [(r.true_label, r.predicted_label if r.predicted_label != "unknown" else wrong[r.true_label])
                     for r in records]
        y, p = zip(*pairs)
        assert scores.accuracy == skm.accuracy_score(y, p)
        assert scores.precision == skm.precision_score(y, p, pos_label="hate")
        assert scores.recall == skm.recall_score(y, p, pos_label="hate")
        assert scores.f1_score == skm.f1_score(y, p, pos_label="hate")
        assert scores.mcc == skm.matthews_corrcoef(y, p)
        assert scores.balanced_accuracy == skm.balanced_accuracy_score(y, p)
        tn, fp, fn, tp = skm.confusion_matrix(y, p, labels=["normal", "hate"]).ravel()
        assert (scores.true_positive, scores.true_negative, scores.false_positive, scores.false_negative) == (tp, tn, fp, fn)
    assert perf.roc_auc == skm.roc_auc_score([r.true_label == "hate" for r in records], [r.p_hate for r in records])
    for g in compute_bias(records):
        rows = [r for r in records if r.target_group == g.group and r.predicted_label != "unknown"]
        tn, fp, fn, tp = skm.confusion_matrix([r.true_label for r in rows], [r.predicted_label for r in rows],
                                              labels=["normal", "hate"]).ravel()
        assert (g.true_positive, g.true_negative, g.false_positive, g.false_negative) == (tp, tn, fp, fn)
        assert g.false_positive_rate == fp / (fp + tn) and g.false_negative_rate == fn / (fn + tp)
        assert g.sample_count == sum(r.target_group == g.group for r in records)


def test_groups_in_order_of_first_appearance():
    records = [rec(0, "hate", "hate", "mexican"), rec(1, "hate", "hate", "lgbtq"), rec(2, "hate", "hate", "mexican")]
    assert [g.group for g in compute_bias(records)] == ["mexican", "lgbtq"]


def test_undefined_numbers_are_nan_not_zero():
    only_hate = [rec(0, "hate", "normal"), rec(1, "hate", "normal")]
    perf = compute_performance(only_hate)
    assert math.isnan(perf.answered.precision)  # no positive predictions
    (group,) = compute_bias(only_hate)
    assert math.isnan(group.false_positive_rate) and group.false_negative_rate == 1.0
    all_unknown = compute_performance([rec(0, "hate", "unknown")])
    assert all_unknown.answered.n == 0 and math.isnan(all_unknown.answered.f1_score)
    assert all_unknown.strict.false_negative == 1 and all_unknown.unknown_rate == 1.0
    assert all_unknown.roc_auc is None


def test_frame_input_equals_record_input():
    assert compute_performance(to_frame(HAND)) == compute_performance(HAND)


def test_bad_true_label_and_policy_are_refused():
    with pytest.raises(ValueError, match="true labels"):
        compute_performance([rec(0, "offensive", "hate")])
    with pytest.raises(ValueError, match="valid: answered, strict"):
        policy_labels(to_frame(HAND), "lenient")
