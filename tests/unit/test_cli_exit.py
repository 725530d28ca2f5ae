"""The ``hsd`` process's quick end (:func:`hsd.cli.console`): the exit status, everything printed
and every atexit handler a library registered are kept; only the interpreter's teardown is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from hsd.cli import _status


def _console(body: str) -> subprocess.CompletedProcess:
    """Run ``hsd.cli.console()`` in a fresh interpreter with ``main`` replaced by ``body``'s."""
    code = textwrap.dedent("""
        import atexit, sys, threading, time
        import hsd.cli
        def main():
        """) + textwrap.indent(textwrap.dedent(body), "    ") + "\nhsd.cli.main = main\nhsd.cli.console()\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a piped stdout stays buffered
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_status_and_buffered_output_and_late_handlers_are_kept():
    done = _console("""
        atexit.register(lambda: print("handler of a library", file=sys.stderr))
        worker = threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished")))
        worker.start()  # a non-daemon thread: joined before the process ends
        print("result line", end="")
        return 3
    """)
    assert done.returncode == 3
    assert done.stdout == "result linethread finished\n"
    assert done.stderr == "handler of a library\n"


@pytest.mark.parametrize("raised, status, stderr", [
    ("SystemExit(2)", 2, ""), ("SystemExit(None)", 0, ""), ("SystemExit('usage: bad')", 1, "usage: bad\n")])
def test_system_exit_keeps_pythons_status(raised, status, stderr):
    done = _console(f"raise {raised}")
    assert (done.returncode, done.stderr) == (status, stderr)


def test_an_escaping_exception_ends_the_python_way():
    done = _console("raise RuntimeError('boom')")
    assert done.returncode == 1
    assert "RuntimeError: boom" in done.stderr


def test_the_module_entry_point_uses_it():
    done = subprocess.run([sys.executable, "-m", "hsd.cli", "no-such-command"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "invalid choice" in done.stderr
    assert _status(None) == 0 and _status(5) == 5 and _status("message") == 1
