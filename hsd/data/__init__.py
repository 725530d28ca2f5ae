"""The unified hate-speech dataset: schema validation, splits, canned subsets, stratified draws.

``select_samples(cfg.data)`` is what a run evaluates; ``load_split(dir, "train")`` feeds
few-shot examples, fine-tuning data and the TF-IDF reference. See data/README.md.
"""

from hsd.data.loader import (
    ENV_VAR,
    SPLITS,
    available_subsets,
    describe,
    load_samples,
    load_split,
    read_rows,
    resolve_data_dir,
    Selection,
    select,
    select_samples,
    split_path,
    subset_path,
)
from hsd.data.sampling import allocate, stratified_sample
from hsd.data.schema import EMPTY_TEXT, TARGET_GROUPS

__all__ = [
    "EMPTY_TEXT",
    "ENV_VAR",
    "SPLITS",
    "TARGET_GROUPS",
    "allocate",
    "available_subsets",
    "describe",
    "load_samples",
    "load_split",
    "read_rows",
    "resolve_data_dir",
    "Selection",
    "select",
    "select_samples",
    "split_path",
    "stratified_sample",
    "subset_path",
]
