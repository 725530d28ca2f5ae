"""Per-sample records as a pandas DataFrame: the one table every metric is computed from."""

from __future__ import annotations

import math
from typing import Any, Iterable, Union

import pandas as pd

from hsd.records import RECORD_FIELDS, Record

Records = Union[Iterable[Record], pd.DataFrame]


def to_frame(records: Records) -> pd.DataFrame:
    """One row per record, columns in Record field order; a DataFrame passes through unchanged.

    Metric functions take either, so a caller holding a frame (collate, notebooks) does not
    rebuild Records, and a caller holding Records does not build a frame.
    """
    if isinstance(records, pd.DataFrame):
        missing = [c for c in ("true_label", "predicted_label", "target_group") if c not in records]
        if missing:
            raise ValueError(f"records frame lacks columns {missing}; build it with hsd.metrics.frame.to_frame")
        return records
    rows = [r.to_json() for r in records]
    return pd.DataFrame(rows, columns=list(RECORD_FIELDS))


def nan_to_none(obj: Any) -> Any:
    """JSON has no NaN: undefined numbers are written as null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj
