"""A rank that fails or dies ends the whole job in seconds, not after the collective timeout.

Without this, the other ranks of a job wait in their next collective until the process
group's timeout (two hours): measured on 2 H200s under submitit's local executor, rank 0 was
still holding its GPU 200 s after rank 1 was SIGKILLed (../shared/notes/measured-2xh200.md).
NCCL's own watchdog acts only at that timeout, and the local executor does not end a job's
other tasks when one dies. So every rank runs a thread that, each second, through the job's
TCP store (the one the process group rendezvoused on, over its own connection, so a main
thread blocked in a store wait cannot stall it):

- bumps its own heartbeat counter; rank 0 watches every rank's, the others watch rank 0's;
  a counter that has not moved for ``distributed.peer_timeout_s`` (default 30) seconds is a dead peer;
- reads the ``failed`` key, which a rank that raised sets (:meth:`PeerWatch.announce`), as
  does a rank that found a dead peer; a store that stops answering means rank 0 (which hosts
  it under submitit and plain ``env://``) or the launcher is gone.

On any of these it prints one ``PeerFailedError`` line naming the rank and the cause, runs the
abort hooks (rank 0 marks its manifest failed) and leaves with exit code 1 at once
(``os._exit``: the main thread is stuck in a collective and cannot unwind).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import threading
import time
from typing import Any, Callable

from hsd.errors import HsdError

INTERVAL_S = 1.0
FAILED = "failed"
EXIT_CODE = 1
_HOOKS: list[Callable[[str], None]] = []


def on_abort(hook: Callable[[str], None]) -> Callable[[], None]:
    """Run ``hook(message)`` if the watchdog ends this process; returns a function that unregisters it."""
    _HOOKS.append(hook)
    return lambda: _HOOKS.remove(hook) if hook in _HOOKS else None


def _store_lost(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"lost the job's store ({type(exc).__name__}: {first}): rank 0 or the launcher is gone"


class PeerFailedError(HsdError):
    """Another rank of the job failed or died; the message names it and its error."""


class PeerWatch:
    """The heartbeat and failure thread of one rank (see the module docstring)."""

    def __init__(self, store: Any, rank: int, world: int, timeout_s: float, interval_s: float = INTERVAL_S) -> None:
        self.store, self.rank, self.world = store, rank, world
        self.timeout_s, self.interval_s = timeout_s, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hsd-peer-watch-{rank}", daemon=True)

    @classmethod
    def start(cls, rank: int, world: int, timeout: float) -> "PeerWatch":
        """Connect a store client of our own to MASTER_ADDR:MASTER_PORT and start watching;
        ``timeout``: the seconds without a heartbeat after which a peer is dead."""
        import torch.distributed as dist

        client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                               timeout=_dt.timedelta(seconds=timeout), wait_for_workers=False)
        # A torchrun restart reuses the launcher's store: its keys must not be the last attempt's.
        prefix = f"hsd_watch/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        watch = cls(dist.PrefixStore(prefix, client), rank, world, timeout)
        watch.store.add(f"beat/{rank}", 1)
        watch._thread.start()
        return watch

    def peers(self) -> list[int]:
        return [r for r in range(self.world) if r != self.rank] if self.rank == 0 else [0]

    def announce(self, message: str) -> None:
        """This rank failed: stop watching (its own error is being raised) and tell the others."""
        self.stop()
        try:
            self.store.set(FAILED, f"rank {self.rank} failed: {message}"[:2000])
        except Exception:  # noqa: BLE001 - the store is gone: the others find that out themselves
            return
        if self.rank == 0:  # it may host the store: stay until the others have read why
            time.sleep(2 * self.interval_s + 0.5)

    def peer_failure(self) -> str | None:
        """Another rank's announced failure, or the store's loss; None if neither (this rank's own
        error may be an echo of either)."""
        try:
            return self._failed_message()
        except Exception as exc:  # noqa: BLE001 - any store error: its host is gone
            return _store_lost(exc)

    def _failed_message(self) -> str | None:
        """The failure a rank announced, if any (store errors propagate to the caller)."""
        return self.store.get(FAILED).decode() if self.store.check([FAILED]) else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        seen = {peer: (-1, time.monotonic()) for peer in self.peers()}
        while not self._stop.wait(self.interval_s):
            try:
                problem = self._check(seen)
            except Exception as exc:  # noqa: BLE001 - any store error: its host is gone
                if self._stop.wait(1.0):  # ...or the job just ended normally and rank 0 left first
                    return
                problem = _store_lost(exc)
            if problem and not self._stop.is_set():
                self._abort(problem)

    def _check(self, seen: dict[int, tuple[int, float]]) -> str | None:
        self.store.add(f"beat/{self.rank}", 1)
        failed = self._failed_message()
        if failed:
            return failed
        now = time.monotonic()
        for peer, (count, since) in seen.items():
            current = int(self.store.add(f"beat/{peer}", 0))
            if current != count:
                seen[peer] = (current, now)
            elif now - since > self.timeout_s:
                message = f"rank {peer} stopped responding (no heartbeat for {self.timeout_s:g} s: killed or hung)"
                try:
                    self.store.set(FAILED, message)  # the other ranks stop too
                except Exception:  # noqa: BLE001
                    pass
                return message
        return None

    def _abort(self, problem: str) -> None:
        message = f"rank {self.rank} stops the job: {problem}"
        print(f"hsd.watchdog.PeerFailedError: {message}", file=sys.stderr, flush=True)
        for hook in list(_HOOKS):
            try:
                hook(message)
            except Exception:  # noqa: BLE001 - exiting anyway; the line above says why
                pass
        sys.stdout.flush()
        os._exit(EXIT_CODE)
