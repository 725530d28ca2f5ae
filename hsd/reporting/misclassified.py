"""Which wrong answers a report shows: the most confident ones when there is a P(hate),
otherwise a seeded sample, per target group; and a few unanswered samples with the end of
their response, so a reader sees *why* the parser could not read them.
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


def select_errors(records: Sequence[Record], per_group: int, seed: int) -> dict[str, Any]:
    """Per group: the ``per_group`` most confident errors (score mode) or a seeded sample of errors."""
    errors = [r for r in records if r.predicted_label in LABELS and r.predicted_label != r.true_label]
    scored = bool(errors) and all(r.p_hate is not None for r in errors)
    by_group: dict[str, list[dict[str, Any]]] = {}
    for group in sorted({r.target_group for r in records}):
        mine = sorted((r for r in errors if r.target_group == group), key=lambda r: r.sample_id)
        if scored:
            conf = {r.sample_id: (r.p_hate if r.predicted_label == "hate" else 1.0 - r.p_hate) for r in mine}
            chosen = sorted(mine, key=lambda r: (-conf[r.sample_id], r.sample_id))[:per_group]
            by_group[group] = [_row(r, conf[r.sample_id]) for r in chosen]
        else:
            chosen = random.Random(f"{seed}:{group}").sample(mine, min(per_group, len(mine)))
            by_group[group] = [_row(r, None) for r in sorted(chosen, key=lambda r: r.sample_id)]
    return {"selection": "most confident (P(hate))" if scored else f"seeded sample (seed {seed})",
            "error_counts": {g: sum(r.target_group == g for r in errors) for g in by_group},
            "by_group": by_group}


def unanswered(records: Sequence[Record], limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` unknown predictions by sample id, with the end of the raw response."""
    rows = [r for r in records if r.predicted_label not in LABELS][:limit]
    return [{"sample_id": r.sample_id, "group": r.target_group, "parse_status": r.parse_status,
             "response_tail": clip(r.raw_response[-RESPONSE_TAIL_CHARS:], RESPONSE_TAIL_CHARS)} for r in rows]
