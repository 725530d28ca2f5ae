"""torch.distributed set-up and teardown from the launcher's environment.

``torchrun``, ``accelerate launch`` and submitit (``TorchDistributedEnvironment().export()``)
all describe a process by the same variables: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT. Reading only those keeps one code path for all three. A single process with none
of them set runs without a process group.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any

from hsd.errors import HsdError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    initialized_here: bool  # we created the process group, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise HsdError(f"environment variable {name}={raw!r} is not an integer (set by the launcher?)") from None


# Ranks wait for each other only at the start and the end; shards differ by at most one sample,
# so a long wait means a dead peer. Generous all the same: a 20B rank may load for many minutes.
TIMEOUT_MIN = 120


def init_distributed(device_kind: str, timeout_min: int = TIMEOUT_MIN) -> DistEnv:
    """Join the process group the launcher described: gloo on CPU, nccl on CUDA.

    ``device_kind`` is ``"cpu"`` or ``"cuda"``. On CUDA the current device is set to
    ``cuda:LOCAL_RANK`` before the group is created, as NCCL requires.
    """
    import torch
    import torch.distributed as dist

    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world <= 1:
        return DistEnv(0, 1, local_rank, initialized_here=False)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise HsdError(f"WORLD_SIZE={world} but {name} is not set: launch with torchrun, accelerate launch or submitit")
    if dist.is_initialized():  # e.g. accelerate created it already
        return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, initialized_here=False)
    backend = "nccl" if device_kind == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"backend": backend, "timeout": _dt.timedelta(minutes=timeout_min)}
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        kwargs["device_id"] = torch.device("cuda", local_rank)
    dist.init_process_group(rank=rank, world_size=world, **kwargs)
    return DistEnv(rank, world, local_rank, initialized_here=True)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast(env: DistEnv, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects only)."""
    if not env.distributed:
        return obj
    import torch.distributed as dist

    box = [obj if env.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(env: DistEnv, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not env.distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def teardown(env: DistEnv, ok: bool = True) -> None:
    """Barrier, then destroy the group we created (else launchers may exit 250 at shutdown).

    After a failure (``ok=False``) there is no barrier: the other ranks may never reach it.
    """
    if not env.initialized_here:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            if ok:
                dist.barrier()
        finally:
            dist.destroy_process_group()
