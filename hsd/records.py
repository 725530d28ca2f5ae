"""The two data shapes every stage agrees on: a dataset sample and a per-sample record.

A *record* is one evaluated sample, written as one JSON line by the rank that evaluated it
(``shards/rank<k>.jsonl``). Every metric, CSV and report is recomputed from records alone,
so the record keeps everything needed to do that: the raw response with special tokens kept,
the parsed label and why it parsed (or did not), the prompt hash and the timing, and the
sample's part of the prompt (the part shared by all samples is stored once per run, see
:mod:`hsd.prompt_files`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Optional

Label = Literal["hate", "normal"]
Predicted = Literal["hate", "normal", "unknown"]
LABELS: tuple[str, str] = ("hate", "normal")
POSITIVE = "hate"


@dataclass(frozen=True)
class Sample:
    """One row of the unified dataset, validated."""

    id: str  # original_id: unique within a split
    text: str
    label: Label
    target_group: str  # target_group_norm: lgbtq | mexican | middle_east
    persona_tag: str
    source: str  # source_dataset
    rationale: Optional[str] = None  # rationale_text, when the dataset has one
    label_multiclass: Optional[str] = None


@dataclass(frozen=True)
class Record:
    """One evaluated sample. Field order is the JSON key order in shard files."""

    sample_id: str
    text: str
    true_label: str
    target_group: str
    persona_tag: str
    source: str
    strategy: str
    prompt_hash: str  # sha256 of the rendered prompt text, first 16 hex chars
    raw_response: str  # decoded with special tokens kept ("" in score mode)
    predicted_label: str  # hate | normal | unknown
    rationale: Optional[str]
    parse_status: str  # see hsd.parsing.ParseStatus
    latency_s: float  # batch wall time / batch size
    rank: int = 0
    p_hate: Optional[float] = None  # score mode: P(hate | prompt); generate mode: at the answer's label token
    prompt_tokens: Optional[int] = None
    new_tokens: Optional[int] = None
    stop_reason: Optional[str] = None  # generate mode: "stop" (a stop token) | "length" (max_new_tokens)
    # The prompt itself (hsd.prompt_files): <run>/prompts/prefix-<prompt_prefix_hash>.txt + prompt_tail.
    # None in records written before prompts were stored, and in imported legacy runs.
    prompt_prefix_hash: Optional[str] = None
    prompt_tail: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        # Every field is a str, number or None: a flat dict equals dataclasses.asdict, without its
        # recursive deep copy (1,009 records: 24.5 -> 1.9 ms; a collation turns each record into a dict four times).
        return {name: getattr(self, name) for name in RECORD_FIELDS}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Record":
        return cls(**{k: v for k, v in obj.items() if k in _FIELD_SET})


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Record))  # JSON key order
_FIELD_SET = frozenset(RECORD_FIELDS)
