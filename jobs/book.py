"""``<experiment>/jobs.json``: what was submitted where, attempt after attempt.

Written by ``hsd submit`` (and ``hsd submit resume``, ``hsd cancel``), read by ``hsd status``
and by the collate job. One entry per task of a stage (``train[3]`` is task 3 of the training
array) with its job id, run directory, state (a :class:`hsd.runs.Status` word) and error line;
a resubmitted task keeps its earlier job ids, states and errors under ``attempts``. On the
local executor an entry also names its job's process group (``process``: :mod:`jobs.local`) and
the book names the ``hsd submit`` process running the experiment (``driver``).

Paths (``run_dir``, ``log``) are relative to the experiment directory, so an experiment can be
copied or moved. Books written before that hold absolute paths: :func:`load_book` reads them
relative to the old ``experiment_dir`` they were written under, wherever the experiment is now.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Optional

from hsd.runs import RunError, Status, atomic_write_json

JOBS_FILE = "jobs.json"
PATH_KEYS = ("run_dir", "log")
ENTRY_KEYS = ("stage", "step", "index", "kind", "job_id", "run_dir", "state")


def load_book(exp: Path) -> dict[str, Any]:
    """The book of ``exp``, its paths relative to ``exp``; one :class:`RunError` naming the file and
    the fix when it is missing or unreadable (truncated, not JSON, not UTF-8, not a book)."""
    path = exp / JOBS_FILE
    if not path.exists():
        raise RunError(f"{exp} has no {JOBS_FILE}: not an experiment submitted with `hsd submit`")
    fix = (f"restore {path} from a backup or a copy of the experiment, or submit the experiment again "
           "under a new name (experiment=NAME); its finished run directories are not touched")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RunError(f"{path} is not UTF-8 text (byte {exc.start}): {fix}") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; "
                       f"cut off by a full disk or a copy?): {fix}") from None
    problem = _shape_problem(data)
    if problem:
        raise RunError(f"{path} is not a job book hsd can read ({problem}): {fix}")
    return _relative_paths(exp, data)


def _shape_problem(data: Any) -> Optional[str]:
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__} instead of an object"
    missing = [k for k in ("command", "executor", "jobs") if k not in data]
    if missing:
        return f"no {', '.join(missing)}"
    if not isinstance(data["jobs"], list):
        return "'jobs' is not a list"
    for i, entry in enumerate(data["jobs"]):
        if not isinstance(entry, dict) or any(k not in entry for k in ENTRY_KEYS):
            return f"jobs[{i}] is not an entry with {', '.join(ENTRY_KEYS)}"
    return None


def _relative_paths(exp: Path, data: dict[str, Any]) -> dict[str, Any]:
    old = data.get("experiment_dir")
    roots = [exp.resolve()] + ([Path(old)] if old and Path(old).is_absolute() else [])
    for entry in data["jobs"]:
        for key in PATH_KEYS:
            if isinstance(entry.get(key), str):
                entry[key] = relative(entry[key], roots)
    data["experiment_dir"] = "."
    return data


def relative(path: str | Path, roots: list[Path]) -> str:
    """``path`` relative to the first of ``roots`` (the experiment here, where it was written) that
    holds it; a relative or an outside path as it is."""
    p = Path(path)
    for root in roots:
        if p.is_absolute() and p.is_relative_to(root):
            return str(p.relative_to(root))  # the experiment itself is "."
    return str(p)


def run_path(exp: Path, entry: dict[str, Any]) -> Path:
    """The entry's run directory where the experiment is now."""
    return exp / entry["run_dir"]


class JobBook:
    """The mapping in ``jobs.json``, saved atomically after every change."""

    def __init__(self, exp: Path, data: dict[str, Any]) -> None:
        self.exp = exp
        self.path = exp / JOBS_FILE
        self.data = data

    @classmethod
    def new(cls, exp: Path, command: str, executor: str) -> "JobBook":
        return cls(exp, {"experiment_dir": ".", "command": command, "executor": executor,
                         "submitted": _dt.datetime.now().isoformat(timespec="seconds"), "jobs": []})

    def relative(self, path: str | Path) -> str:
        return relative(path, [self.exp.resolve(), self.exp])

    def add(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            entry.update({k: self.relative(entry[k]) for k in PATH_KEYS if isinstance(entry.get(k), str)})
        self.data["jobs"] += entries
        self.save()

    def find(self, step: str, index: int) -> dict[str, Any]:
        return next(e for e in self.data["jobs"] if e["step"] == step and e["index"] == index)

    def of_step(self, step: str) -> list[dict[str, Any]]:
        return [e for e in self.data["jobs"] if e["step"] == step]

    def new_attempt(self, entry: dict[str, Any], executor: str) -> None:
        """Keep the entry's last attempt under ``attempts``; the entry becomes PENDING again."""
        last = {k: entry.get(k) for k in ("job_id", "state", "error")}
        entry["attempts"] = [*entry.get("attempts", []), last]
        entry.update(job_id="-", state=Status.PENDING.value, error=None)
        for key in ("process", "log"):
            entry.pop(key, None)
        self.data["executor"] = executor
        self.data["resubmitted"] = _dt.datetime.now().isoformat(timespec="seconds")

    def save(self) -> None:
        atomic_write_json(self.path, self.data)
