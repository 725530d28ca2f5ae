"""What every hsd job shares: config as a plain dict, paths, ranks, and how to be resubmitted.

A job object is pickled by submitit and unpickled on the compute node, and pickled again by
``checkpoint()`` when Slurm preempts it or its time runs out. So it holds only the resolved
config (``hsd.config.to_dict``) and paths, never a model or a tensor, and imports torch and the
library lazily inside ``__call__``. All state that survives a requeue lives on disk in the run
directory (validation shards, training checkpoints); the resubmitted fresh instance picks it up.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission, TorchDistributedEnvironment

from hsd.distributed import world_of_one
from hsd.rundir import interrupt_on_sigterm


DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextmanager
def distributed_environment() -> Iterator[None]:
    """RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT for this task, as ``torchrun`` sets them,
    so the library initialises the same way under every launcher.

    Set for a single task too: Accelerate + DeepSpeed expect the env:// variables even in a world
    of one. CUDA_VISIBLE_DEVICES is left alone: every task sees all the node's GPUs and the
    library picks ``cuda:LOCAL_RANK``. The debug executor runs the job inside the submitting
    process, so there the variables (a world of one) are restored afterwards.
    """
    env = _job_environment()
    if env is not None and env.name() != "debug":
        # overwrite: a job submitted from inside another job inherits its RANK etc.
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        yield
        return
    saved = {k: os.environ.get(k) for k in DIST_VARS}
    os.environ.update(world_of_one())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def stop_like_ctrl_c() -> None:
    """On the local executor, SIGTERM ends the job as Ctrl-C does (KeyboardInterrupt: a validation
    keeps its records, a training its checkpoints). submitit's job process logs and ignores it
    ("Bypassing signal SIGTERM"): on Slurm a SIGTERM only precedes the SIGKILL of a preemption or
    cancellation, and the USR2 before it is what asks for a checkpoint. Locally nothing else would
    end the job but SIGKILL, so ``hsd submit``'s Ctrl-C, ``hsd cancel`` and ``timeout`` could not
    stop it. Slurm jobs keep submitit's handler."""
    env = _job_environment()
    if env is not None and env.name() == "local":
        interrupt_on_sigterm()


def _job_environment() -> Any:
    try:
        return submitit.JobEnvironment()
    except RuntimeError:  # called outside any submitit job (debug executor's exception())
        return None


class HsdJob(Checkpointable):
    """A job: ``config`` (plain dict) plus named paths; subclasses implement :meth:`run`."""

    stage_kind = "job"  # what `hsd status` calls it (validate, train, ...)

    def __init__(self, config: dict[str, Any], **paths: str | list[str]) -> None:
        self.config = config
        self.paths = paths

    def __call__(self) -> str:
        from hsd.config import from_dict
        from hsd.paths import use_bytecode_cache

        use_bytecode_cache()  # a job imports torch below, in self.run (hsd.paths says why)
        cfg = from_dict(self.config, source=f"{type(self).__name__} config")
        stop_like_ctrl_c()
        with distributed_environment():
            return str(self.run(cfg, **self.paths))

    def run(self, cfg: Any, **paths: Any) -> Path:
        """The stage's library call; every job class overrides it."""
        raise TypeError(f"{type(self).__name__} does not define run()")

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Resubmit a fresh instance on the same run directory: progress is on disk, not in self."""
        return DelayedSubmission(type(self)(self.config, **self.paths))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.paths.items())})"
