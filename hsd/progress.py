"""A progress line every N seconds (``report.progress_every_s``), for logs nobody watches live.

A job on a cluster has no terminal: a progress bar there is either absent or thousands of
carriage returns in a file. A line per interval (done/total, rate, elapsed, ETA, and whatever
the caller adds: loss, tokens/s) is what ``tail -f`` of a job log and ``grep`` want.
"""

from __future__ import annotations

import time
from typing import Callable, Optional


def duration(seconds: float) -> str:
    """``1h02m``, ``3m05s``, ``42s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Calls ``emit(line)`` at most once per ``every_s`` seconds, and when the work is done.

    ``done`` counts from this attempt's start (``start_at``: what an earlier attempt did), so
    the rate and the ETA are this attempt's, not diluted by a resume.
    """

    def __init__(self, label: str, total: int, every_s: float, emit: Callable[[str], None], unit: str = "samples",
                 start_at: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.every_s, self.emit, self.unit = label, total, every_s, emit, unit
        self.start_at, self.clock = start_at, clock
        self.started = self.last = clock()

    def update(self, done: int, extra: str = "", force: bool = False) -> Optional[str]:
        """Emit (and return) a line if ``every_s`` passed since the last one, the work is done, or ``force``."""
        now = self.clock()
        if not (force or done >= self.total or now - self.last >= self.every_s):
            return None
        self.last = now
        line = self.line(done, now - self.started) + (f"  {extra}" if extra else "")
        self.emit(line)
        return line

    def line(self, done: int, elapsed: float) -> str:
        pct = 100.0 * done / self.total if self.total else 100.0
        rate = (done - self.start_at) / elapsed if elapsed > 0 else 0.0
        eta = duration((self.total - done) / rate) if rate > 0 else "?"
        return (f"{self.label}: {done}/{self.total} {self.unit} ({pct:.0f}%), {rate:.3g} {self.unit}/s, "
                f"elapsed {duration(elapsed)}, eta {eta}")
