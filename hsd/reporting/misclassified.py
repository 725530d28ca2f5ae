"""Which wrong answers a report shows: the most confident ones when there is a P(hate),
otherwise a seeded sample, per target group; the top false positives and false negatives of the
whole run (the old users' lists: most confident first, else by sample id); and a few unanswered
samples with the end of their response, so a reader sees *why* the parser could not read them.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from hsd.records import LABELS, Record
from hsd.reporting.fmt import clip

TEXT_CHARS = 220
RESPONSE_TAIL_CHARS = 200


def _row(r: Record, confidence: float | None) -> dict[str, Any]:
    return {"sample_id": r.sample_id, "group": r.target_group, "true": r.true_label, "predicted": r.predicted_label,
            "confidence": confidence, "text": clip(r.text, TEXT_CHARS), "rationale": clip(r.rationale, 160),
            "parse_status": r.parse_status}


def _errors(records: Sequence[Record]) -> tuple[list[Record], bool]:
    """Answered wrong predictions, and whether every one has a P(hate) (score mode)."""
    errors = [r for r in records if r.predicted_label in LABELS and r.predicted_label != r.true_label]
    return errors, bool(errors) and all(r.p_hate is not None for r in errors)


def _confidence(r: Record) -> float:
    return r.p_hate if r.predicted_label == "hate" else 1.0 - r.p_hate


def _most_confident(errors: Sequence[Record], n: int) -> list[dict[str, Any]]:
    chosen = sorted(errors, key=lambda r: (-_confidence(r), r.sample_id))[:n]
    return [_row(r, _confidence(r)) for r in chosen]


def select_errors(records: Sequence[Record], per_group: int, seed: int) -> dict[str, Any]:
    """Per group: the ``per_group`` most confident errors (score mode) or a seeded sample of errors."""
    errors, scored = _errors(records)
    by_group: dict[str, list[dict[str, Any]]] = {}
    for group in sorted({r.target_group for r in records}):
        mine = sorted((r for r in errors if r.target_group == group), key=lambda r: r.sample_id)
        if scored:
            by_group[group] = _most_confident(mine, per_group)
        else:
            chosen = random.Random(f"{seed}:{group}").sample(mine, min(per_group, len(mine)))
            by_group[group] = [_row(r, None) for r in sorted(chosen, key=lambda r: r.sample_id)]
    return {"selection": "most confident (P(hate))" if scored else f"seeded sample (seed {seed})",
            "error_counts": {g: sum(r.target_group == g for r in errors) for g in by_group},
            "by_group": by_group}


def top_errors(records: Sequence[Record], n: int) -> dict[str, Any]:
    """The run's ``n`` top false positives and false negatives: most confident first (score mode),
    otherwise the first by sample id."""
    errors, scored = _errors(records)
    lists = {}
    for key, predicted in (("false_positives", "hate"), ("false_negatives", "normal")):
        mine = sorted((r for r in errors if r.predicted_label == predicted), key=lambda r: r.sample_id)
        lists[key] = _most_confident(mine, n) if scored else [_row(r, None) for r in mine[:n]]
    return {"n": n, "selection": "most confident (P(hate))" if scored else "first by sample id",
            "counts": {k: sum(r.predicted_label == p for r in errors)
                       for k, p in (("false_positives", "hate"), ("false_negatives", "normal"))},
            **lists}


def unanswered(records: Sequence[Record], limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` unknown predictions by sample id, with the end of the raw response."""
    rows = [r for r in records if r.predicted_label not in LABELS][:limit]
    return [{"sample_id": r.sample_id, "group": r.target_group, "parse_status": r.parse_status,
             "response_tail": clip(r.raw_response[-RESPONSE_TAIL_CHARS:], RESPONSE_TAIL_CHARS)} for r in rows]
