"""``hsd cancel EXPERIMENT``: stop what an experiment still runs or waits to run, and record it.

Slurm: ``scancel`` of its unfinished jobs. Local executor: the ``hsd submit`` running the
experiment gets SIGTERM and stops its job itself, as on Ctrl-C (:mod:`jobs.interrupt`); where that
process is gone (killed), the jobs' process groups are stopped from here
(:func:`jobs.local.stop_group`). Either way every unfinished entry ends CANCELLED in ``jobs.json``
and ``hsd submit resume`` runs it later. A finished experiment is left exactly as it is.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from hsd.runs import RunError, Status
from jobs import local
from jobs.book import JobBook
from jobs.executor import cancel
from jobs.status import collect, driver_gone

DRIVER_WAIT_S = 2 * local.STOP_GRACE_S + 10  # hsd submit's own stopping: SIGTERM, grace, SIGKILL
WHY = "cancelled: hsd cancel"


def cancel_experiment(exp: Path) -> list[str]:
    """Cancel ``exp``'s unfinished jobs; the lines to print."""
    data, _ = collect(exp)
    live = _unfinished(data)
    if not live:
        counts = Counter(e["state"] for e in data["jobs"])
        return [f"nothing to cancel: every job of {exp} has ended "
                f"({', '.join(f'{n} {state}' for state, n in counts.items())})"]
    lines = _cancel_slurm(exp, data, live) if data["executor"] == "slurm" else _cancel_local(exp, data)
    return lines + [f"resume with: hsd submit resume {exp}"]


def _unfinished(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in data["jobs"] if not Status.parse(e["state"]).finished]


def _cancel_slurm(exp: Path, data: dict[str, Any], live: list[dict[str, Any]]) -> list[str]:
    ids = [e["job_id"] for e in live if e["job_id"] != "-"]
    cancel(ids, strict=True)
    for entry in live:
        entry.update(state=Status.CANCELLED.value, error=WHY)
    JobBook(exp, data).save()
    return [f"cancelled {e['stage']} (job {e['job_id']})" for e in live]


def _cancel_local(exp: Path, data: dict[str, Any]) -> list[str]:
    driver = data.get("driver") if isinstance(data.get("driver"), dict) else {}
    if not local.on_this_host(driver):
        raise RunError(f"{exp} runs on host {driver['host']}: run hsd cancel {exp} there")
    if driver and not driver_gone(data):
        pid = int(driver["pid"])
        _signal(pid, signal.SIGTERM)
        if not _wait(lambda: not local.driver_alive(driver), DRIVER_WAIT_S):
            _signal(pid, signal.SIGKILL)  # it did not stop its jobs in time: they are stopped from here
        data, _ = collect(exp)  # as hsd submit recorded it before it exited
        if not _unfinished(data):
            return [f"stopped hsd submit (pid {pid}): it cancelled its jobs and recorded them (hsd status {exp})"]
    lines = []
    for entry in _unfinished(data):
        if Status.parse(entry["state"]) is Status.RUNNING:
            lines.append(f"cancelled {entry['stage']} (job {entry['job_id']}): {_stop(entry)}")
        else:
            lines.append(f"cancelled {entry['stage']} (not started)")
        entry.update(state=Status.CANCELLED.value, error=WHY)
    JobBook(exp, data).save()
    return lines


def _stop(entry: dict[str, Any]) -> str:
    if entry.get("process"):
        return local.stop_job(entry["process"])
    if not entry["job_id"].isdigit():  # the debug executor's: it ran inside its hsd submit
        return "not running"
    # a job started before jobs were process groups: submitit's own cancel, SIGINT to its controller
    pid = int(entry["job_id"])
    _signal(pid, signal.SIGINT)
    if _wait(lambda: not local.alive(pid, None), local.STOP_GRACE_S):
        return "stopped"
    _signal(pid, signal.SIGKILL)
    return "killed"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise RunError(f"not allowed to signal process {pid}: run hsd cancel as the user who submitted") from None


def _wait(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(local.POLL_S)
    return True
