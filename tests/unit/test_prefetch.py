"""hsd.prefetch: modules imported on a background thread; a failing import is left for later."""

from __future__ import annotations

import sys

from hsd import prefetch


def test_imports_on_its_own_thread_and_a_failure_is_left_for_later(tmp_path, monkeypatch):
    (tmp_path / "prefetched_here.py").write_text("import threading\nTHREAD = threading.current_thread().name\n")
    (tmp_path / "broken_here.py").write_text("raise RuntimeError('a broken module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    thread = prefetch.start(["broken_here", "prefetched_here", "prefetched_here"])
    thread.join(timeout=30)
    assert not thread.is_alive() and thread.daemon
    assert sys.modules["prefetched_here"].THREAD == "hsd-prefetch"
    assert "broken_here" not in sys.modules  # the main thread's own import raises it, in context
    for name in ("prefetched_here", "broken_here"):
        sys.modules.pop(name, None)
