"""Where a job's wall time goes: seconds per named phase, for the manifest and the log.

A user waits for the whole job, not for generation: on one GPU a validation of the test split
spends about as long on start-up, model build, warm-up and reports as on generating. The
phases are timed on every rank with a monotonic clock and rank 0's land in ``manifest.json``
(``phases_s``), so a slow start can be seen per run without a profiler, and benchmarks can
report the breakdown of the real command.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator, Optional


class Phases:
    """Named phase durations in seconds; a phase timed twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.seconds.items()}

    def summary(self) -> str:
        """One log line, in the order the phases ran: ``setup 1.2 s, model 9.8 s, ...``."""
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())


def process_age_s() -> Optional[float]:
    """Seconds since this process started (interpreter start-up and imports before a job's own
    clock starts), from ``/proc``; None where that is not readable (not Linux)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after the command name
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])  # both since boot, to 10 ms (btime is whole seconds)
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
