"""Few-shot examples for the rich prompt: from the train split, per target group and label.

An example that is also an evaluated sample hands the model its answer, so the pool excludes
the evaluated ids (canned subsets are drawn from train, so this matters) and any train text
that also occurs in the val or test files (the shipped splits share a few texts under
different ids); the chosen set is then checked once more and any overlap raises.

Choice is stable: candidates are ranked by a seeded hash of their id, so excluding one id
changes at most the examples that id would have been, and the same config always yields the
same prompt (and prompt hash) whatever subset is evaluated.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from hsd.data import SPLITS, TARGET_GROUPS, read_rows, split_path
from hsd.errors import DataError, TemplateError
from hsd.records import LABELS, Sample

# How the assistant's example answers name each group ({group} in few_shot.rationale).
GROUP_NAMES: dict[str, str] = {
    "lgbtq": "LGBTQ+ people",
    "mexican": "Mexican and Latino people",
    "middle_east": "people from the Middle East",
}
assert set(GROUP_NAMES) == set(TARGET_GROUPS), "every target group needs a name in prompts"
MAX_EXAMPLE_CHARS = 300  # longer train texts are not used as examples: they only lengthen the prompt


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def texts_outside_train(data_dir: Path) -> set[str]:
    """Normalized texts of the val and test files, where present (raw read: only texts matter)."""
    texts: set[str] = set()
    for split in SPLITS:
        path = split_path(data_dir, split)
        if split != "train" and path.is_file():
            texts.update(_norm(r["text"]) for r in read_rows(path) if isinstance(r, dict) and isinstance(r.get("text"), str))
    return texts


def check_disjoint(examples: Iterable[Sample], evaluated_ids: set[str]) -> None:
    """Raise if any few-shot example is an evaluated sample."""
    overlap = sorted({e.id for e in examples} & set(evaluated_ids))
    if overlap:
        raise TemplateError(f"few-shot examples overlap the evaluated samples ({len(overlap)}: "
                            f"{', '.join(overlap[:5])}); examples must come from outside the evaluated set")


def select_examples(train: Sequence[Sample], per_group: int, seed: int, evaluated_ids: set[str],
                    banned_texts: set[str] = frozenset()) -> list[Sample]:
    """``per_group`` examples for every (target group, label), in a seeded interleaved order."""
    strata: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for s in train:
        if s.id not in evaluated_ids and len(s.text) <= MAX_EXAMPLE_CHARS and _norm(s.text) not in banned_texts:
            strata[(s.target_group, s.label)].append(s)
    chosen: list[Sample] = []
    for group in TARGET_GROUPS:
        for label in LABELS:
            pool = sorted(strata[(group, label)], key=lambda s: _rank(seed, s.id))
            if len(pool) < per_group:
                raise DataError(
                    f"few-shot needs {per_group} train examples of group {group!r}, label {label!r} outside the "
                    f"evaluated samples; only {len(pool)} available: lower prompt.few_shot_per_group"
                )
            chosen.extend(pool[:per_group])
    chosen.sort(key=lambda s: _rank(seed, "order:" + s.id))  # no block of one label or group
    check_disjoint(chosen, evaluated_ids)
    return chosen
