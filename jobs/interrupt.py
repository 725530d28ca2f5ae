"""Ctrl-C, SIGTERM and SIGHUP of ``hsd submit``: its jobs stopped and recorded, one line, no traceback.

While :class:`StopSignals` is active, each of :data:`STOP_SIGNALS` raises :class:`Interrupted` in
the main thread (Python's default for SIGTERM would end the process on the spot, leaving its
jobs running and ``jobs.json`` saying RUNNING/PENDING forever). The code that runs the plan
catches it, stops and records its jobs, and ``hsd submit`` exits with the shell's code for the
signal (130 for SIGINT, 143 for SIGTERM) after printing :attr:`Interrupted.message`.

Inside :meth:`StopSignals.held` a signal waits until the block ends, so a job is never
started without being recorded (and so stoppable). Once the stopping has begun, further
signals are ignored: a second Ctrl-C must not cut the recording short. :func:`stop_and_record`
is that stopping for the local and debug executors.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from hsd.runs import Status
from jobs import local

if TYPE_CHECKING:
    from jobs.book import JobBook

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal reached ``hsd submit``; ``exit_code`` is 128 + the signal's number."""

    def __init__(self, signum: int, message: Optional[str] = None) -> None:
        self.signum = signum
        self.message = message or f"interrupted: {signal_name(signum)}"
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopSignals:
    """A context manager: while active, a stop signal raises :class:`Interrupted` (main thread only:
    elsewhere Python delivers no signals and nothing is installed)."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._holding = 0
        self._pending: Optional[int] = None
        self._quiet = False

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._quiet:
            return
        if self._holding:
            self._pending = self._pending or signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A signal arriving inside the block is raised when it ends (not when it raises)."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if not self._holding and self._pending is not None and not self._quiet:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)

    def quiet(self) -> None:
        """From now on stop signals are ignored (the jobs are being stopped and recorded)."""
        self._quiet = True


def stop_and_record(exc: KeyboardInterrupt, exp: Path, book: JobBook,
                    running: Optional[tuple[dict[str, Any], Any]]) -> Interrupted:
    """The running job stopped (SIGTERM to its process group, then SIGKILL), it and every task not
    started recorded as CANCELLED; the :class:`Interrupted` to raise."""
    name = signal_name(getattr(exc, "signum", signal.SIGINT))
    stopped = []
    if running is not None:
        entry, job = running
        if entry.get("process"):
            local.stop_job(entry["process"], reap=job._process.poll)
        entry.update(state=Status.CANCELLED.value, error=f"stopped: hsd submit got {name}")
        stopped.append(f"{entry['stage']} (job {entry['job_id']})")
    not_run = [e["stage"] for e in book.data["jobs"] if e["state"] == Status.PENDING.value]
    for entry in book.data["jobs"]:
        if entry["state"] == Status.PENDING.value:
            entry.update(state=Status.CANCELLED.value, error=f"not run: hsd submit got {name}")
    book.save()
    return interrupted(exc, exp, stopped, not_run)


def interrupted(exc: KeyboardInterrupt, exp: Path, stopped: list[str], not_run: list[str]) -> Interrupted:
    """The one line ``hsd submit`` prints: the signal, what it stopped, what it did not run, the way on."""
    signum = getattr(exc, "signum", signal.SIGINT)
    parts = [f"interrupted: {signal_name(signum)}"]
    if stopped:
        parts.append(f"stopped {', '.join(stopped)}")
    if not_run:
        parts.append(f"not run: {', '.join(not_run)}")
    return Interrupted(signum, f"{'; '.join(parts)}; resume with: hsd submit resume {exp}")
