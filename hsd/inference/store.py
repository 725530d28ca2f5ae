"""Per-rank shard files: the only state a validation keeps, and what makes it resumable.

Each rank appends one JSON line per evaluated sample to ``<run>/shards/rank<k>.jsonl`` after
every batch, then flushes and fsyncs, so a kill loses at most the batch in flight. On restart
every rank reads *all* shard files (a requeued job may have another world size) and skips the
ids already there. A write cut off mid-line (often inside a multi-byte character: records are
written with ``ensure_ascii=False``) is a torn last line (:mod:`hsd.textio`): skipped when read,
and cut from the file at its last newline before appending, so the sample is redone and the file
stays valid JSONL. A line before the last that is not UTF-8 or not JSON is an error naming the
shard and line: no kill leaves one, and skipping it would lose a record without a word.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

from hsd import textio
from hsd.records import Record
from hsd.runs import RunError

SHARD_DIR = "shards"
FIX_LINE = ("keep a copy of the shard (cp {path} {path}.bak), delete line {line} (sed -i '{line}d' {path}) "
            "and run the same command again: the run resumes and redoes that line's sample")


def shard_path(run_dir: Path, rank: int) -> Path:
    return run_dir / SHARD_DIR / f"rank{rank}.jsonl"


def shard_files(run_dir: Path) -> list[Path]:
    """Every rank's shard file present, in rank order (rank10 after rank9)."""
    files = (run_dir / SHARD_DIR).glob("rank*.jsonl")
    return sorted(files, key=lambda p: (len(p.name), p.name))


def truncate_torn_tail(path: Path) -> int:
    """Cut a torn last line (a write the process died in); return the bytes removed."""
    if not path.exists():
        return 0
    with open(path, "rb+") as fh:
        data = fh.read()
        keep = textio.complete_length(data)  # 0 when the only line is torn
        if keep == len(data):
            return 0
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return len(data) - keep


def read_records(run_dir: Path) -> list[Record]:
    """All complete records of all shards (torn last lines skipped)."""
    return [_record(obj, path, number) for path in shard_files(run_dir)
            for number, obj in textio.json_lines(path.read_bytes(), path, error=RunError, fix=FIX_LINE)]


def _record(obj: object, path: Path, number: int) -> Record:
    try:
        return Record.from_json(obj)  # type: ignore[arg-type]
    except (TypeError, AttributeError):  # JSON, but not a record: a file hsd did not write
        raise RunError(f"{path}: line {number} is not an hsd record; "
                       f"{textio.fix_text(FIX_LINE, path, number)}") from None


def recorded_ids(run_dir: Path) -> set[str]:
    return {r.sample_id for r in read_records(run_dir)}


class ShardWriter:
    """Appends records to this rank's shard, durably (flush + fsync per batch)."""

    def __init__(self, run_dir: Path, rank: int) -> None:
        self.path = shard_path(run_dir, rank)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        truncate_torn_tail(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")

    def append(self, records: Iterable[Record]) -> None:
        # One write call per batch: a kill tears at most the last line, never interleaves.
        text = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)
        try:
            self._fh.write(text)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:  # a full disk or quota: one clear error, the records so far stay
            self.close()
            raise RunError(
                f"cannot write to {self.path}: {exc.strerror or exc}. Free disk space (or fix the file "
                "system) and run the same command again: the run resumes after the last complete record"
            ) from None

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:  # the unwritten rest of a failed batch; resume redoes that batch
            pass

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge(run_dir: Path, expected_ids: Iterable[str]) -> list[Record]:
    """Every expected sample exactly once, ordered by sample id; RunError otherwise."""
    records = read_records(run_dir)
    expected = set(expected_ids)
    counts = Counter(r.sample_id for r in records)
    dupes = sorted(i for i, n in counts.items() if n > 1)
    missing = sorted(expected - counts.keys())
    extra = sorted(counts.keys() - expected)
    problems = []
    if dupes:
        problems.append(f"{len(dupes)} sample ids recorded more than once (e.g. {dupes[:3]})")
    if missing:
        problems.append(f"{len(missing)} selected samples have no record (e.g. {missing[:3]})")
    if extra:
        problems.append(f"{len(extra)} records are not in the selected samples (e.g. {extra[:3]})")
    if problems:
        raise RunError(
            f"shards in {run_dir / SHARD_DIR} are inconsistent: {'; '.join(problems)}. Was the run "
            "directory reused with another data selection? Start a new run directory"
        )
    return sorted(records, key=lambda r: r.sample_id)
