"""The unified dataset schema: one JSON object per row, validated into a :class:`Sample`.

Every problem is reported with the file, the row index (0-based, as ``jq '.[i]'`` reads it)
and the field, because a dataset of thousands of rows is fixed by hand, one row at a time.
All problems of a file are collected and raised as one :class:`DataError`, so a user fixes
them in one pass instead of one rerun per row.

Labels and target groups are compared after ``strip().lower()``: ``"Hate"`` and ``" hate"``
are read as ``hate`` (counted, and logged once per file) because other pipelines write them
that way and the meaning is unambiguous; any other value is an error listing the valid ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hsd.errors import DataError
from hsd.records import LABELS, Sample

log = logging.getLogger("hsd.data")

TARGET_GROUPS: tuple[str, ...] = ("lgbtq", "mexican", "middle_east")
# Fields every row must carry as a non-empty string (original_id may also be an integer).
REQUIRED_STR = ("text", "label_binary", "target_group_norm", "persona_tag", "source_dataset")
OPTIONAL_STR = ("rationale_text", "label_multiclass")  # string or null
MAX_LISTED = 5  # problems quoted in one error message; the rest are counted
EMPTY_TEXT: tuple[str, ...] = ("skip", "error")  # what a row whose text is "" does (data.empty_text)


@dataclass
class _Report:
    """Problems and notes gathered while validating one file."""

    path: Path
    problems: list[str] = field(default_factory=list)
    normalized: int = 0  # labels / groups read after case or whitespace normalization
    dropped: list[str] = field(default_factory=list)  # rows skipped for empty text

    def add(self, row: int, row_id: Optional[str], fld: str, problem: str) -> None:
        where = f"row {row}" + (f" (original_id {row_id!r})" if row_id else "")
        self.problems.append(f"{where}: field '{fld}' {problem}")

    def raise_if_any(self) -> None:
        if not self.problems:
            return
        shown = "; ".join(self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        tail = f"; and {more} more" if more > 0 else ""
        count = f"{len(self.problems)} invalid rows" if len(self.problems) > 1 else "invalid row"
        raise DataError(
            f"{self.path}: {count} (row index from 0): {shown}{tail}. Fix the rows in the file "
            f"(schema: {', '.join(REQUIRED_STR)}, original_id; labels {'/'.join(LABELS)}; "
            f"target groups {', '.join(TARGET_GROUPS)})"
        )


def _row_id(row: dict[str, Any]) -> Optional[str]:
    value = row.get("original_id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value) if str(value).strip() else None


def _choice(row: dict, key: str, valid: tuple[str, ...], i: int, rid: Optional[str], rep: _Report) -> Optional[str]:
    """A closed-vocabulary field, read after strip().lower()."""
    raw = row[key]
    norm = raw.strip().lower()
    if norm not in valid:
        rep.add(i, rid, key, f"is {raw!r}; valid values: {', '.join(valid)}")
        return None
    if norm != raw:
        rep.normalized += 1
    return norm


def _half_pair(value: Any) -> Optional[str]:
    """A JSON escape like ``\\ud83d`` without its partner loads as a lone surrogate, which no
    UTF-8 file can hold: the run would stop when it writes the sample's record. Said here instead."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"holds half a character: the JSON escape \\u{ord(value[exc.start]):04x} at character "
                f"{exc.start} without its pair (an emoji cut in two?); complete or remove that escape")
    return None


def _check_types(row: dict[str, Any], i: int, rid: Optional[str], rep: _Report) -> bool:
    ok = True
    for key in REQUIRED_STR:
        value = row.get(key)
        if key not in row or value is None:
            rep.add(i, rid, key, "is missing" if key not in row else "is null")
            ok = False
        elif not isinstance(value, str):
            rep.add(i, rid, key, f"must be a string, got {type(value).__name__} {value!r}")
            ok = False
        elif not value.strip() and key != "text":
            rep.add(i, rid, key, "is empty")
            ok = False
    for key in OPTIONAL_STR:
        if row.get(key) is not None and not isinstance(row[key], str):
            rep.add(i, rid, key, f"must be a string or null, got {type(row[key]).__name__}")
            ok = False
    for key in (*REQUIRED_STR, *OPTIONAL_STR, "original_id"):
        problem = _half_pair(row.get(key))
        if problem:
            rep.add(i, rid, key, problem)
            ok = False
    if rid is None:
        rep.add(i, None, "original_id", f"must be a non-empty string or integer, got {row.get('original_id', '<missing>')!r}")
        ok = False
    return ok


def row_to_sample(row: Any, i: int, rep: _Report, empty_text: str) -> Optional[Sample]:
    """Validate one row; problems go to ``rep``. None when the row is invalid or dropped."""
    if not isinstance(row, dict):
        rep.problems.append(f"row {i}: must be a JSON object, got {type(row).__name__} {str(row)[:60]!r}")
        return None
    rid = _row_id(row)
    if not _check_types(row, i, rid, rep):
        return None
    if not row["text"].strip():
        if empty_text == "skip":
            rep.dropped.append(f"row {i} ({rid})")
        else:
            rep.add(i, rid, "text", "is empty (data.empty_text=error; data.empty_text=skip leaves such rows out, "
                                    "counted in the run's manifest and report)")
        return None
    label = _choice(row, "label_binary", LABELS, i, rid, rep)
    group = _choice(row, "target_group_norm", TARGET_GROUPS, i, rid, rep)
    if label is None or group is None:
        return None
    return Sample(
        id=rid, text=row["text"], label=label, target_group=group,
        persona_tag=row["persona_tag"], source=row["source_dataset"],
        rationale=row.get("rationale_text") or None, label_multiclass=row.get("label_multiclass"),
    )


@dataclass(frozen=True)
class Rows:
    """The samples of one file, and the rows left out for empty text (``row i (original_id)``)."""

    samples: list[Sample]
    empty_text_skipped: tuple[str, ...]


def validate_rows(rows: list[Any], path: Path, empty_text: str = "skip") -> Rows:
    """All rows of one file -> samples, or one DataError listing every problem. ``empty_text``:
    ``skip`` leaves rows whose text is "" out (one warning line for the file), ``error`` refuses them."""
    if empty_text not in EMPTY_TEXT:
        raise ValueError(f"empty_text must be one of {', '.join(EMPTY_TEXT)}, got {empty_text!r}")
    rep = _Report(path)
    samples: list[Sample] = []
    first_row: dict[str, int] = {}
    for i, row in enumerate(rows):
        sample = row_to_sample(row, i, rep, empty_text)
        if sample is None:
            continue
        if sample.id in first_row:
            rep.add(i, sample.id, "original_id", f"duplicates row {first_row[sample.id]}; ids must be unique in a file")
            continue
        first_row[sample.id] = i
        samples.append(sample)
    rep.raise_if_any()
    if rep.normalized:
        log.warning("%s: %d label/target-group values read after lower-casing or stripping spaces",
                    path, rep.normalized)
    if rep.dropped:
        log.warning("%s: %d rows with empty text skipped (data.empty_text=skip; =error refuses the file): %s",
                    path, len(rep.dropped), ", ".join(rep.dropped[:MAX_LISTED]))
    if not samples:
        raise DataError(f"{path}: no usable samples (every row had empty text and was skipped)")
    return Rows(samples, tuple(rep.dropped))
