"""Checkpoints that are complete or absent, and the SIGUSR2 hook that asks for one.

Layout: ``<run>/checkpoints/step_0000050/`` holding Accelerate's state (DeepSpeed's
per-rank ZeRO partitions, RNG states), ``trainer_state.json`` (step, best eval loss,
counters) and the ``COMPLETE`` marker. A checkpoint is written into ``.tmp-step_…`` and
renamed only once every rank has finished and the marker is in: a job killed while saving
leaves a temp directory (removed on the next start), never one that looks complete, and
resume always takes the newest directory with the marker.

Preemption: Slurm (via submitit) sends SIGUSR2 before the time limit or on preemption.
The handler only sets a flag; the trainer checks it at the next step boundary (all ranks
agree through an all-reduce), saves, then hands the signal to the handler that was there
before — submitit's, which requeues the job (on rank 0) and exits — and otherwise exits
with :data:`PREEMPTED_EXIT_CODE`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Optional

from hsd.runs import atomic_write_json, move_into_place

MARKER = "COMPLETE"
STATE_FILE = "trainer_state.json"
PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again" — the run resumes from its checkpoint


class Preempted(SystemExit):
    """Raised after the preemption checkpoint is saved; exits the process with code 75."""

    def __init__(self, step: int) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step = step


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def _step_of(path: Path) -> int:
    return int(path.name.split("_", 1)[1])


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and (p / MARKER).is_file()]
    return sorted(found, key=_step_of)


def latest(run_dir: Path) -> Optional[Path]:
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def remove_partial(run_dir: Path) -> list[str]:
    """Delete leftovers of interrupted saves (rank 0, before training starts)."""
    root = checkpoints_dir(run_dir)
    removed = []
    for path in list(root.glob(".tmp-*")) + [p for p in root.glob("step_*") if not (p / MARKER).exists()]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


def save(accelerator: Any, run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Collective: every rank writes its part; rank 0 seals it with the marker and renames."""
    root = checkpoints_dir(run_dir)
    final, tmp = root / f"step_{step:07d}", root / f".tmp-step_{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # Frozen base weights are not saved: they are the base model's, and for a 20B model they
    # would make every checkpoint ~40 GB.
    accelerator.save_state(str(tmp), exclude_frozen_parameters=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / STATE_FILE, state)
        _write_synced(tmp / MARKER, json.dumps({"step": step}) + "\n")
        move_into_place(tmp, final, replace=True)  # the same step saved again: a stop right after a periodic save
        for old in complete_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load(accelerator: Any, checkpoint: Path) -> dict[str, Any]:
    """Restore model, optimizer and RNG states; return the trainer state saved with them."""
    accelerator.load_state(str(checkpoint), load_module_strict=False)  # frozen weights come from the base model
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


class PreemptionGuard:
    """While active, SIGUSR2 sets :attr:`requested` instead of interrupting a step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "PreemptionGuard":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGUSR2, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGUSR2, self._previous)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = True

    def hand_over(self, step: int) -> None:
        """After the checkpoint: let the previous handler act (submitit requeues), then exit."""
        previous, self._previous = self._previous, None
        if previous is not None:
            signal.signal(signal.SIGUSR2, previous)
        if callable(previous):
            previous(signal.SIGUSR2, None)  # submitit rank 0: requeue + sys.exit; other ranks return
        raise Preempted(step)
