"""``<experiment>/jobs.json``: what was submitted where, attempt after attempt.

Written by ``hsd submit`` (and ``hsd submit resume``), read by ``hsd status`` and by the
collate job. One entry per task of a stage (``train[3]`` is task 3 of the training array)
with its job id, run directory, state and error line; a resubmitted task keeps its earlier
job ids, states and errors under ``attempts``.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from hsd.runs import RunError, atomic_write_json

JOBS_FILE = "jobs.json"


def load_book(exp: Path) -> dict[str, Any]:
    path = exp / JOBS_FILE
    if not path.exists():
        raise RunError(f"{exp} has no {JOBS_FILE}: not an experiment submitted with `hsd submit`")
    return json.loads(path.read_text())


class JobBook:
    """The mapping in ``jobs.json``, saved atomically after every change."""

    def __init__(self, exp: Path, data: dict[str, Any]) -> None:
        self.path = exp / JOBS_FILE
        self.data = data

    @classmethod
    def new(cls, exp: Path, command: str, executor: str) -> "JobBook":
        return cls(exp, {"experiment_dir": str(exp), "command": command, "executor": executor,
                         "submitted": _dt.datetime.now().isoformat(timespec="seconds"), "jobs": []})

    def add(self, entries: list[dict[str, Any]]) -> None:
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
        entry.update(job_id="-", state="PENDING", error=None)
        self.data["executor"] = executor
        self.data["resubmitted"] = _dt.datetime.now().isoformat(timespec="seconds")

    def save(self) -> None:
        atomic_write_json(self.path, self.data)
