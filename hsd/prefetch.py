"""Import the modules a job needs after its generation while the GPU generates.

Why: after the last sample, ``hsd validate`` writes its reports and, for a baseline, collates
the run — importing pandas, scikit-learn, SciPy and matplotlib first (~1.5-2 s of CPU on the lent
GPU machines, all of it after the GPU went idle). A decode loop spends most of its time waiting
for the GPU with the GIL released, so a thread that imports them meanwhile takes that time off the
job's end (:func:`start`, called as generation starts). An import that fails here is left for the
main thread to raise where it is needed, with its own context.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Iterable

log = logging.getLogger(__name__)


def start(modules: Iterable[str]) -> threading.Thread:
    """Import ``modules`` (dotted names) on a daemon thread; returns the thread."""
    names = list(dict.fromkeys(modules))
    thread = threading.Thread(target=_import_all, args=(names,), name="hsd-prefetch", daemon=True)
    thread.start()
    return thread


def _import_all(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 — the main thread's own import will report it
            log.debug("prefetch of %s failed (%s); left to its first use", name, exc)
