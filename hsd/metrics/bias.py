"""Per target group error rates: who gets flagged wrongly (FPR) and whose hate is missed (FNR).

Counts and rates follow the unknown policy of :mod:`hsd.metrics.performance`: the headline
``false_positive_rate`` / ``false_negative_rate`` and the tp/tn/fp/fn columns are over answered
samples (as the old ``bias_metrics_*.csv``), ``sample_count`` counts every sample of the group
(unknowns included, as the old file did), and the strict rates count an unknown as an error.
Groups come in order of first appearance in the records, as the old pipeline wrote them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from hsd.metrics.frame import Records, to_frame
from hsd.metrics.performance import confusion_counts, policy_labels, rate
from hsd.records import LABELS


@dataclass(frozen=True)
class GroupMetrics:
    group: str
    sample_count: int  # all samples of the group, unknowns included
    false_positive_rate: float  # fp / (fp + tn), answered samples; NaN without normal samples
    false_negative_rate: float  # fn / (fn + tp), answered samples; NaN without hate samples
    true_positive: int
    true_negative: int
    false_positive: int
    false_negative: int
    unknown_count: int
    strict_false_positive_rate: float  # an unknown on a normal sample counts as a false positive
    strict_false_negative_rate: float  # an unknown on a hate sample counts as a false negative

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def compute_bias(records: Records) -> list[GroupMetrics]:
    """One :class:`GroupMetrics` per target group, in order of first appearance."""
    frame = to_frame(records)
    return [_group(str(g), frame[frame["target_group"] == g])
            for g in frame["target_group"].unique()]


def _group(group: str, frame: pd.DataFrame) -> GroupMetrics:
    counts = confusion_counts(*policy_labels(frame, "answered"))
    strict = confusion_counts(*policy_labels(frame, "strict"))
    return GroupMetrics(
        group=group,
        sample_count=len(frame),
        false_positive_rate=_fpr(counts),
        false_negative_rate=_fnr(counts),
        **counts,
        unknown_count=int((~frame["predicted_label"].isin(LABELS)).sum()),
        strict_false_positive_rate=_fpr(strict),
        strict_false_negative_rate=_fnr(strict),
    )


def _fpr(c: dict[str, int]) -> float:
    return rate(c["false_positive"], c["false_positive"] + c["true_negative"])


def _fnr(c: dict[str, int]) -> float:
    return rate(c["false_negative"], c["false_negative"] + c["true_positive"])
