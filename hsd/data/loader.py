"""Finding and reading dataset files: the data directory, splits, canned subsets.

Layout of a data directory (``make data`` links it from ``../shared/data``)::

    <dir>/unified/unified_{train,val,test}.json   the splits
    <dir>/canned/<name>.json                      named subsets (same schema)

The split of a sample is the file it is in; the ``split`` field inside rows is not used
(in the shipped files it does not match the file).
"""

from __future__ import annotations

import json
import os
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsd import textio
from hsd.data.sampling import stratified_sample
from hsd.data.schema import validate_rows
from hsd.errors import DataError
from hsd.records import Sample

SPLITS: tuple[str, ...] = ("train", "val", "test")
ENV_VAR = "HSD_DATA_DIR"
_FIX = "run `make data` (links ../shared/data) or set HSD_DATA_DIR (or data.dir) to a directory holding unified/unified_{train,val,test}.json"


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """``data_dir`` if given, else ``$HSD_DATA_DIR``, else ``./data``. Not checked here:
    ``hsd data`` resolves a directory it is about to create."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get(ENV_VAR) or "data")


def _require_dir(data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist: {_FIX}")


def split_path(data_dir: Path, split: str) -> Path:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return data_dir / "unified" / f"unified_{split}.json"


def available_subsets(data_dir: Path) -> list[str]:
    return sorted(p.stem for p in (data_dir / "canned").glob("*.json"))


def subset_path(data_dir: Path, subset: str) -> Path:
    """``<dir>/canned/<subset>.json``; an unknown name lists the available ones."""
    _require_dir(data_dir)
    name = subset[:-5] if subset.endswith(".json") else subset
    path = data_dir / "canned" / f"{name}.json"
    if not path.is_file():
        names = available_subsets(data_dir)
        listed = ", ".join(names) if names else f"none ({data_dir / 'canned'} has no .json files)"
        raise DataError(f"unknown subset {subset!r}: no file {path}. Available subsets: {listed}")
    return path


def _looks_like_json_lines(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def read_rows(path: Path) -> list[Any]:
    """The JSON list in ``path``. UTF-8 with or without a BOM; CRLF line ends are fine."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"dataset file not found: {path}: {_FIX}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a dataset file") from None
    text = textio.decode(raw, path, error=DataError)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected a JSON list of sample objects")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and _looks_like_json_lines(text):
            q = shlex.quote(str(path))  # jq into a new file, then replace: `jq ... F > F` would empty F first
            raise DataError(
                f"{path}: this is JSON Lines (one object per line) but hsd expects one JSON list "
                f"of objects; convert it with: jq -s . {q} > {q}.tmp && mv {q}.tmp {q}"
            ) from None
        raise DataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(rows, list):
        hint = " (a one-line JSON Lines file?)" if isinstance(rows, dict) else ""
        raise DataError(f"{path}: the top level must be a JSON list of sample objects, got {type(rows).__name__}{hint}")
    if not rows:
        raise DataError(f"{path}: the list is empty (no samples); check the file was exported completely")
    return rows


def load_samples(path: str | Path, *, empty_text: str = "skip") -> list[Sample]:
    """Read and validate one dataset file; one DataError lists every invalid row. Rows whose text
    is "" are left out with one warning line (``empty_text="error"``: refused)."""
    path = Path(path)
    return validate_rows(read_rows(path), path, empty_text).samples


def load_split(data_dir: str | Path | None, split: str, *, empty_text: str = "skip") -> list[Sample]:
    """``unified_<split>.json`` of the data directory (resolved as in :func:`resolve_data_dir`)."""
    root = resolve_data_dir(data_dir)
    _require_dir(root)
    return load_samples(split_path(root, split), empty_text=empty_text)


@dataclass(frozen=True)
class Selection:
    """What a run evaluates, and what the file held that it cannot: rows with empty text, left out
    before the draw (``row i (original_id)``), so a run's manifest and report can count them."""

    samples: list[Sample]
    path: Path
    empty_text_skipped: tuple[str, ...]


def select(data_cfg: Any) -> Selection:
    """The samples a run evaluates: a split or a canned subset, then ``max_samples`` drawn
    stratified by label x target group with ``data_cfg.seed`` (input order kept)."""
    root = resolve_data_dir(data_cfg.dir)
    _require_dir(root)
    path = subset_path(root, data_cfg.subset) if data_cfg.subset else split_path(root, data_cfg.split)
    rows = validate_rows(read_rows(path), path, data_cfg.empty_text)
    samples = rows.samples
    if data_cfg.max_samples != "all":
        samples = stratified_sample(samples, data_cfg.max_samples, data_cfg.seed, where=str(path))
    return Selection(samples, path, rows.empty_text_skipped)


def select_samples(data_cfg: Any) -> list[Sample]:
    """:func:`select`'s samples."""
    return select(data_cfg).samples


def describe(samples: list[Sample]) -> dict[str, int]:
    """Counts by label and by target group, for logs and manifests."""
    counts = Counter(f"label:{s.label}" for s in samples) + Counter(f"group:{s.target_group}" for s in samples)
    return {"total": len(samples), **dict(sorted(counts.items()))}
