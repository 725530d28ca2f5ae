"""The run lifecycle, written once: what every command that writes a run directory does.

    with RunDirectory(path, "validate", VALIDATE_CHECK).claim(cfg) as run:   # refuse or lock
        if run.status is Status.COMPLETED and nothing_to_do:
            return path                      # a no-op resume leaves every figure as it was
        run.begin(world_size, strategy=...)  # config.yaml, manifest: attempt, RUNNING
        ...                                  # the work; run.update(...) as it goes
        run.end(Status.COMPLETED, samples=...)

``claim`` refuses, before it writes anything (no manifest change, no lock file left behind):
a directory of another kind (a training run given to ``hsd validate``, an experiment root,
fine-tuning data, an imported legacy run, a folder hsd did not write), a run started with
settings that would change its results (:class:`ConfigCheck`), and a run another process
drives (the ``.lock`` flock). Once :meth:`RunDirectory.begin` has run, leaving the ``with``
block records how it ended: an error is ``FAILED`` with its message, Ctrl-C or SIGTERM is
``INTERRUPTED`` (the same command resumes), a preemption exit keeps the ``PREEMPTED`` the
training loop wrote, and a peer rank found dead (:mod:`hsd.watchdog`) is ``FAILED``.
Only rank 0 holds a RunDirectory; the other ranks write disjoint shard files.
"""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hsd import runs
from hsd.config import Config, dump_config, load_config, to_dict
from hsd.errors import HsdError
from hsd.runs import RunError, Status
from hsd.watchdog import on_abort

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
LOCK = ".lock"
# Directories hsd writes that are not runs, known by the file that marks them.
OTHER_KINDS = {"jobs.json": "an experiment directory (hsd submit)", "ftdata.json": "fine-tuning data (hsd ftdata)"}
# Files a run directory may hold before its manifest exists (a crash between lock and manifest).
PRE_MANIFEST = {LOCK, CONFIG}


def kind_of(path: Path) -> Optional[str]:
    """The command that wrote ``path`` (``validate``, ``train``, ``import-legacy``, ...), None for a
    missing or empty directory; raises RunError naming what it is when it is not a run."""
    if not path.exists():
        return None
    if not path.is_dir():
        raise RunError(f"{path} is a file, not a run directory: choose a directory (new or an earlier run's)")
    names = {p.name for p in path.iterdir() if not runs.is_transient(p.name)}  # never make a directory foreign
    for marker, what in OTHER_KINDS.items():
        if marker in names:
            raise RunError(f"{path} is {what}, not a run directory: choose a new run directory")
    command = command_of(path / MANIFEST) if MANIFEST in names else None
    if command is None:  # no manifest yet (killed before it was written), or one without its command
        command = next((c for c, marks in WORK_MARKS.items() if names & marks), None)
    if command is None and not names <= PRE_MANIFEST | {MANIFEST}:
        raise RunError(f"{path} is not empty and holds no hsd {MANIFEST}: it is not a run hsd wrote. "
                       "Choose a new run directory (or an earlier run's)")
    return command


# What a run's work leaves before (or without) the command in its manifest.
WORK_MARKS = {"validate": {"shards"}, "train": {"checkpoints", "train_log.jsonl"}}


def command_of(manifest: Path) -> Optional[str]:
    """The ``command`` a manifest records (None if it records none); imports before 2026-12
    spelled it ``hsd import-legacy ...``."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{manifest} cannot be read ({exc}); restore it from a backup or choose a new "
                       "run directory") from None
    command = str(data.get("command") or "") if isinstance(data, dict) else ""
    return "import-legacy" if command.startswith("hsd import-legacy") else command or None


@dataclass(frozen=True)
class ConfigCheck:
    """Which settings a resumed run must keep: every key of ``sections`` and the dotted ``keys``,
    except the ``free`` ones (speed, bookkeeping: how fast the same results are produced).
    An allow-list: a key added later is refused on change until someone declares it free."""

    sections: tuple[str, ...]
    keys: tuple[str, ...] = ()
    free: frozenset[str] = frozenset()

    def changed(self, saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
        """Dotted leaf keys (``train.lora.r``) whose values differ between two resolved configs."""
        keys = sorted({k for s in self.sections for tree in (saved, now) for k in _leaves(tree.get(s), s)})
        return [k for k in keys + list(self.keys)
                if not any(k == f or k.startswith(f + ".") for f in self.free) and _get(saved, k) != _get(now, k)]


def _leaves(tree: Any, prefix: str) -> list[str]:
    if not isinstance(tree, dict):
        return [prefix]
    return [leaf for key, value in tree.items() for leaf in _leaves(value, f"{prefix}.{key}")]


def _get(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


class RunDirectory:
    """One run directory of one command, driven by one process (see the module docstring)."""

    def __init__(self, path: Path, command: str, check: ConfigCheck) -> None:
        self.path = Path(path).resolve()
        self.command = command
        self.check = check
        self.attempt = 0
        self._lock: Optional[runs.RunLock] = None
        self._begun = False
        self._ended = False
        self._unhook = lambda: None

    # -- claim: refusals change nothing ------------------------------------------------------
    def claim(self, cfg: Config) -> "RunDirectory":
        """Refuse another kind, other settings or another driver; else hold the lock."""
        try:
            self._refuse_foreign(cfg)
        except RunError:  # a run its driver is writing can look like anything: name the driver first
            runs.RunLock(self.path / LOCK).refuse_if_held()
            raise
        runs.ensure_writable(self.path)
        self._lock = runs.RunLock(self.path / LOCK).acquire()
        try:  # the first look was unlocked: a racing process may have started the run meanwhile
            self._refuse_foreign(cfg)
        except BaseException:
            self.release()
            raise
        return self

    def _refuse_foreign(self, cfg: Config) -> None:
        kind = kind_of(self.path)
        if kind is not None and kind != self.command:
            raise RunError(f"{self.path} is a run of `hsd {kind}` (its {MANIFEST}), not of `hsd {self.command}`; "
                           f"`hsd {self.command}` writes only its own runs: choose a new run directory")
        saved = self.path / CONFIG
        if not saved.exists():
            return
        old, now = to_dict(load_config(saved)), to_dict(cfg)
        changed = self.check.changed(old, now)
        if changed:
            detail = "; ".join(f"{k}: saved {_get(old, k)!r}, now {_get(now, k)!r}" for k in changed)
            free = f" Only these may differ between attempts: {', '.join(sorted(self.check.free))}." \
                if self.check.free else ""
            raise RunError(f"{self.path} was started with other settings ({detail}). Resuming would mix results "
                           f"of two settings: restore the saved values (see its {CONFIG}) or use a new run "
                           f"directory.{free}")

    # -- what is there -----------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    @property
    def status(self) -> Optional[Status]:
        """None for a run that never began."""
        raw = self.manifest.get("status")
        return Status.parse(raw) if raw else None

    # -- the attempt ---------------------------------------------------------------------------
    def begin(self, cfg: Config, world_size: int, first_ts: str, **fields: Any) -> str:
        """Start an attempt: ``config.yaml`` (first attempt), the manifest (attempt, RUNNING, this
        host's facts); returns the run's ``ts`` (the first attempt's, kept across resumes)."""
        if not (self.path / CONFIG).exists():
            runs.atomic_write_text(self.path / CONFIG, dump_config(cfg))
        now = runs.base_manifest(self.command, world_size)
        previous = self.manifest
        if not previous:
            self.attempt = 1
            runs.update_manifest(self.path, **now, ts=first_ts, attempt=1, status=Status.RUNNING.value, **fields)
            ts = first_ts
        else:  # a requeued job may land on another node: host, devices and versions are this attempt's
            self.attempt = int(previous.get("attempt", 1)) + 1
            ts = previous.get("ts", first_ts)
            runs.update_manifest(self.path, **{k: v for k, v in now.items() if k != "started"}, ts=ts,
                                 attempt=self.attempt, attempt_started=now["started"], status=Status.RUNNING.value,
                                 error=None, **fields)
        self._begun = True
        self._unhook = on_abort(self._peer_failed)
        return ts

    def end(self, status: Status, **fields: Any) -> None:
        """Record how this attempt ended (COMPLETED, STOPPED, PREEMPTED, ...)."""
        runs.update_manifest(self.path, status=status.value, finished=runs.timestamp(), **fields)
        self._ended = True

    def fail(self, exc: BaseException) -> None:
        """Record how an error ended the attempt, once: Ctrl-C/SIGTERM is INTERRUPTED, anything else
        FAILED with its message. Leaving the ``with`` block calls it; so does a rank that learns the
        error from another rank (:func:`hsd.distributed.announce_failure`)."""
        if self._begun and not self._ended:
            status = Status.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else Status.FAILED
            self._record(status, error=None if status is Status.INTERRUPTED else _message(exc))
            self._ended = True

    def _peer_failed(self, message: str) -> None:
        """The watchdog ends this process (a peer rank died or failed): FAILED, whatever follows."""
        self._record(Status.FAILED, error=message)
        self._ended = True

    def _record(self, status: Status, **fields: Any) -> None:
        try:
            runs.update_manifest(self.path, status=status.value, **fields)
        except HsdError:  # the disk is full: the error being raised says more than this one
            pass

    def release(self) -> None:
        self._unhook()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, kind: Any, exc: Optional[BaseException], tb: Any) -> None:
        try:
            if exc is not None and not isinstance(exc, SystemExit):  # SystemExit: preemption, already recorded
                self.fail(exc)
        finally:
            self.release()


def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, HsdError) else f"{type(exc).__name__}: {exc}"


SIGTERM_MESSAGE = "SIGTERM"


def interrupt_on_sigterm() -> None:
    """From now on SIGTERM unwinds like Ctrl-C (a KeyboardInterrupt whose text is
    :data:`SIGTERM_MESSAGE`), so a run records INTERRUPTED and releases its lock instead of the
    process vanishing mid-write. Main thread only (Python delivers signals there). Once: a
    second SIGTERM — submitit's local controller forwards the one its job's group got — must not
    cut the first one's clean-up short."""
    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(SIGTERM_MESSAGE)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
