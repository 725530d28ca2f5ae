"""Run directories, atomic writes, the run lock and the manifest.

Layout: ``<results_dir>/<experiment>/<run_id>/`` holding ``config.yaml``, ``manifest.json``,
``shards/rank<k>.jsonl`` and the output files. Writes go to a temporary file in the same
directory and are renamed into place, so a crash never leaves a half-written CSV where a
good one was. Names that would escape the results root are refused.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

from hsd.errors import HsdError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunError(HsdError):
    """A problem with a run directory (name, lock, permissions); the message says how to fix it."""


class Status(str, Enum):
    """The one spelling of where a run or a job stands: run manifests (validate, train, ftdata,
    import-legacy) and ``jobs.json`` entries alike. Slurm's words, since users read them in
    ``squeue``/``sacct`` too; :meth:`parse` also reads what runs written before this enum say."""

    PENDING = "PENDING"  # a job not started yet
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"  # every output written; the one "done"
    FAILED = "FAILED"  # an error; the manifest's ``error`` says which
    CANCELLED = "CANCELLED"  # a job stopped by the user (or never run: its dependency failed)
    INTERRUPTED = "INTERRUPTED"  # Ctrl-C or SIGTERM: what was recorded is kept, the same command resumes
    PREEMPTED = "PREEMPTED"  # checkpointed on the scheduler's signal; requeued, it resumes
    STOPPED = "STOPPED"  # train.stop_after_steps reached: a checkpoint, no adapter
    LOST = "LOST"  # a local job recorded as running whose process is gone

    @classmethod
    def parse(cls, text: str | None) -> "Status":
        """Any spelling hsd ever wrote (``complete``, ``completed``, ``early_stopped``, lower case)
        or a scheduler state (``TIMEOUT``, ``NODE_FAIL``, ``CANCELLED by 0`` ...)."""
        word = (text or "").split(" ")[0].strip().upper()
        if word in _LEGACY:
            return _LEGACY[word]
        try:
            return cls(word)
        except ValueError:
            return cls.FAILED if word in SCHEDULER_FAILURES else cls.PENDING if word in SCHEDULER_WAITING else cls.RUNNING

    @property
    def finished(self) -> bool:
        """Ended and will not go on by itself (a resume may still redo it, unless COMPLETED)."""
        return self not in (Status.PENDING, Status.RUNNING)

    def __str__(self) -> str:
        return self.value


_LEGACY = {"COMPLETE": Status.COMPLETED, "EARLY_STOPPED": Status.COMPLETED}
SCHEDULER_FAILURES = frozenset({"TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "UNKNOWN"})
SCHEDULER_WAITING = frozenset({"SUBMITTED", "REQUEUED", "CONFIGURING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD",
                               "REQUEUE_FED"})


def timestamp() -> str:
    """The seed's file-name timestamp: ``YYYYmmdd_HHMMSS``."""
    return _dt.datetime.now().strftime("%Y%m%d_%H%M%S")


def check_name(name: str, what: str) -> str:
    """Refuse names that are not a single safe path component (no '/', '..', spaces)."""
    if not _NAME_RE.fullmatch(name) or name in {".", ".."}:  # fullmatch: "$" would accept "x\n"
        raise RunError(
            f"{what} '{name}' is not allowed: use letters, digits, '.', '_' and '-' only "
            "(one path component; it must not escape the results directory)"
        )
    return name


def experiment_dir(results_dir: str | Path, experiment: str) -> Path:
    root = Path(results_dir).resolve()
    path = (root / check_name(experiment, "experiment name")).resolve()
    if root not in path.parents:
        raise RunError(f"experiment '{experiment}' would escape the results directory {root}")
    return path


def run_dir(results_dir: str | Path, experiment: str, run_id: str) -> Path:
    exp = experiment_dir(results_dir, experiment)
    return exp / check_name(run_id, "run name")


def new_run_dir(results_dir: str | Path, experiment: str, run_id: str) -> Path:
    """Create a run directory no other run has: ``run_id``, else ``run_id-2``, ``run_id-3``, ...

    Default run names end in a seconds timestamp, so two runs started in the same second would
    otherwise share (and mix) one directory. ``mkdir`` without ``exist_ok`` is atomic: of two
    processes racing for one name exactly one gets it, and the other takes the next suffix.
    """
    exp = ensure_writable(experiment_dir(results_dir, experiment))
    for n in range(1, 1000):
        path = exp / check_name(run_id if n == 1 else f"{run_id}-{n}", "run name")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"{exp} already holds {run_id} and 998 numbered variants of it; choose another run_name")


WRITE_PROBE = ".write-test-"  # ensure_writable's probe file
TEMP_SUFFIX = ".tmp"  # atomic_write_text's temporary: .<name>.<random>.tmp beside <name>


def is_transient(name: str) -> bool:
    """A file these helpers create and remove again: a writability probe or an atomic write's
    temporary. Another process starting on the same directory, or one killed mid-write, leaves them."""
    return name.startswith(WRITE_PROBE) or (name.startswith(".") and name.endswith(TEMP_SUFFIX))


def ensure_writable(path: Path) -> Path:
    """Create ``path`` (and parents) and prove it is writable, with one clear error if not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=WRITE_PROBE, delete=True):
            pass
    except OSError as exc:
        raise RunError(
            f"cannot write to {path}: {exc.strerror or exc}. Choose a writable results_dir "
            "(config key results_dir or override results_dir=PATH)"
        ) from None
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + fsync + rename: readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared with the team
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # a full disk or quota: one clear error; the old file is intact
            raise RunError(f"cannot write {path}: {exc.strerror or exc}. Free disk space (or fix the file "
                           "system) and run the same command again") from None
        raise


@contextlib.contextmanager
def publish_dir(out: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temp directory beside ``out``; on success make it readable and rename it to ``out``.

    The one way hsd writes a directory whole or not at all (models, adapters, fine-tuning data,
    imported runs): a crash or an error leaves no half-written directory where a reader would
    find it, only the temp one, removed on the way out. ``out`` must not exist or be empty,
    unless ``replace`` (an adapter from an earlier attempt of the same run) removes it first.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    except OSError as exc:
        raise RunError(f"cannot create {out}: {exc.strerror or exc}") from None
    try:
        yield tmp
        move_into_place(tmp, out, replace)
    except OSError as exc:
        raise RunError(f"cannot create {out}: {exc.strerror or exc} (nothing was written there)") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def move_into_place(tmp: Path, out: Path, replace: bool) -> None:
    """The last step of every directory publish (:func:`publish_dir`, and the training checkpoint
    that all ranks fill before rank 0 seals it): make ``tmp`` readable, rename it to ``out`` and
    sync the parent, so a reader finds the old directory or the whole new one, never a part."""
    # mkdtemp and safetensors create owner-only modes; a shared results dir must be readable.
    for path in [tmp, *tmp.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    if out.exists() and replace:
        shutil.rmtree(out)
    elif out.exists():
        out.rmdir()  # OSError if it is not empty: nothing is overwritten
    os.replace(tmp, out)
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@dataclass
class RunLock:
    """An exclusive ``flock`` on ``<run>/.lock``: two processes never drive the same run.

    Ranks of one run share the lock holder: only rank 0 takes it (the others are children of
    the same launcher and write disjoint shard files).
    """

    path: Path
    _fh: Any = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip()
            self._fh.close()
            self._fh = None
            raise self._in_use(holder) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self._fh.flush()
        return self

    def refuse_if_held(self) -> None:
        """Raise the in-use error of :meth:`acquire` when another process holds the lock; create nothing."""
        try:
            fh = open(self.path)
        except OSError:  # no lock file: nobody drives this directory
            return
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._in_use(fh.read().strip()) from None

    def _in_use(self, holder: str) -> RunError:
        return RunError(f"run directory {self.path.parent} is in use by {holder or 'another process'}; wait for it "
                        "to finish or choose another run_name")

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "accelerate", "peft", "deepspeed", "submitit", "sklearn", "pandas"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


def _devices() -> list[str]:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return ["cpu"]
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def hsd_version() -> str:
    """The installed hsd's version (with the git sha beside it, the run says what wrote it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hsd")
    except PackageNotFoundError:
        return "unknown (not installed)"


def base_manifest(command: str, world_size: int = 1) -> dict[str, Any]:
    """Facts every run records: versions, git sha, host, devices, Slurm ids, start time."""
    slurm = {k: v for k, v in os.environ.items() if k in {
        "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT", "SLURM_JOB_PARTITION",
        "SLURM_JOB_NODELIST", "SLURM_JOB_NUM_NODES"}}  # the nodes of a multi-node job ("host" is rank 0's)
    return {
        "command": command,
        "hsd_version": hsd_version(),
        "argv": sys.argv,
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "git_sha": git_sha(),
        "versions": _versions(),
        "devices": _devices(),
        "world_size": world_size,
        "slurm": slurm,
    }


def update_manifest(run: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``manifest.json`` (atomic); refresh versions and devices."""
    path = run / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    manifest.update(fields)
    manifest["versions"] = {**manifest.get("versions", {}), **_versions()}
    atomic_write_json(path, manifest)
    return manifest


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Complete JSON lines of ``path``; a torn last line (no newline, or not UTF-8 or not JSON: a
    write cut off, often inside a multi-byte character) is skipped, the caller redoes it. An
    earlier such line is a RunError naming the file and line (:func:`hsd.textio.json_lines`)."""
    from hsd import textio

    if not path.exists():
        return
    for _, obj in textio.json_lines(path.read_bytes(), path, error=RunError):
        yield obj
