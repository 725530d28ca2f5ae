"""The one process-group bootstrap of validation, training and the deepspeed backend.

``torchrun``, ``accelerate launch`` and submitit (``TorchDistributedEnvironment().export()``)
all describe a process by the same variables: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT. Reading only those keeps one code path for all three. Here, and only here:

- the device is chosen from what the process can see (:func:`device_index`) and set *before*
  the group exists (NCCL binds a communicator to the current device);
- the group is created (gloo on CPU, nccl on CUDA), with a :class:`~hsd.watchdog.PeerWatch`
  so that a rank that raises or dies ends the job in seconds, not after the collective timeout;
- :func:`main_only` runs a step on rank 0 and hands every rank its result, or its error.
"""

from __future__ import annotations

import datetime as _dt
import copy
import os
import socket
from dataclasses import dataclass
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from hsd.config import DistributedConfig
from hsd.errors import HsdError

PEER_TIMEOUT_S = DistributedConfig.peer_timeout_s  # the config's default, for callers without a config


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_world_size: int  # ranks on this node (sizes the per-GPU memory choice of training)
    initialized_here: bool  # we created the process group, so we destroy it
    device: str = "cpu"  # cuda:<i> (see device_index) or cpu

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


# Ranks wait for each other in collectives; a dead or failed peer is caught by the watchdog in
# seconds, so this only bounds a live but stuck peer. Generous: a 120B rank may load for long.
TIMEOUT_MIN = 120
LAUNCHER_LOCAL_RANK = "HSD_LAUNCHER_LOCAL_RANK"  # LOCAL_RANK as the launcher set it (see bind_device)
_WATCH: list[Any] = []  # the running PeerWatch of this process, if any


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise HsdError(f"environment variable {name}={raw!r} is not an integer (set by the launcher?)") from None


def launcher_rank() -> int:
    """This process's global rank as its launcher set it (0 outside any launcher): a command
    prints its result once, from rank 0, before or after the process group exists."""
    return _env_int("RANK", 0)


def device_index(local_rank: int, visible: int) -> int:
    """The CUDA device of a rank among the ``visible`` ones: ``local_rank`` modulo ``visible``.

    A node-wide launcher (torchrun, submitit local) shows every task all GPUs: rank k takes
    ``cuda:k``. A cluster that gives each task its own GPU (``--gpus-per-task``, a
    CUDA_VISIBLE_DEVICES per task) shows one: every rank takes ``cuda:0``.
    """
    if visible < 1:
        raise HsdError("no CUDA device is visible to this task (CUDA_VISIBLE_DEVICES?); set model.device=cpu "
                       "or give each task a GPU")
    if local_rank < 0:
        raise HsdError(f"LOCAL_RANK={local_rank} is negative; launch with torchrun, accelerate launch or submitit")
    return local_rank % visible


def bind_device(device_kind: str) -> str:
    """Set this rank's CUDA device (before any process group); returns ``cuda:<i>`` or ``cpu``.

    DeepSpeed (engine, ``zero.Init``) and accelerate take ``cuda:LOCAL_RANK`` as the device, which
    does not exist when a task sees only its own GPU; so LOCAL_RANK is rewritten to the chosen
    index, and the launcher's value kept in ``HSD_LAUNCHER_LOCAL_RANK``.
    """
    if device_kind != "cuda":
        return "cpu"
    import torch

    launcher = _env_int(LAUNCHER_LOCAL_RANK, _env_int("LOCAL_RANK", 0))
    index = device_index(launcher, torch.cuda.device_count())
    if index != launcher:
        os.environ[LAUNCHER_LOCAL_RANK] = str(launcher)
        os.environ["LOCAL_RANK"] = str(index)
    torch.cuda.set_device(index)
    return f"cuda:{index}"


def single_process_env() -> None:
    """Started without a launcher: describe this process as a world of one.

    DeepSpeed needs a process group even for one rank; a launcher sets these itself. A free
    port, because several single-process runs may share a host.
    """
    if "WORLD_SIZE" in os.environ:
        return
    os.environ.update(world_of_one())


def world_of_one() -> dict[str, str]:
    """The launcher variables of a one-process job on this host (a free port for its store)."""
    return {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}


def free_port() -> int:
    """A TCP port free on this host now (for a process group's store)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_distributed(device_kind: str, always: bool = False, peer_timeout_s: float = PEER_TIMEOUT_S) -> DistEnv:
    """Join the process group the launcher described: gloo on CPU, nccl on CUDA.

    ``device_kind`` is ``"cpu"`` or ``"cuda"``. A single process gets no group unless
    ``always`` (DeepSpeed needs one). A group that exists already (accelerate launch, an
    earlier caller) is joined, not recreated, and not destroyed by :func:`teardown`. A group
    created here of more than one rank gets a peer watchdog: ``peer_timeout_s`` is
    ``distributed.peer_timeout_s`` of the job's config.
    """
    import torch
    import torch.distributed as dist

    if always:
        single_process_env()
    world = _env_int("WORLD_SIZE", 1)
    device = bind_device(device_kind)  # before the group: NCCL binds a communicator to the current device
    if dist.is_initialized():
        world = dist.get_world_size()
        return DistEnv(dist.get_rank(), world, _env_int("LOCAL_WORLD_SIZE", world), False, device)
    if world <= 1 and not always:
        return DistEnv(0, 1, 1, False, device)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise HsdError(f"WORLD_SIZE={world} but {name} is not set: launch with torchrun, accelerate launch or submitit")
    rank = _env_int("RANK", 0)
    kwargs: dict[str, Any] = {"backend": "nccl" if device_kind == "cuda" else "gloo",
                              "timeout": _dt.timedelta(minutes=TIMEOUT_MIN)}
    if device_kind == "cuda":
        kwargs["device_id"] = torch.device(device)
    dist.init_process_group(rank=rank, world_size=world, **kwargs)
    if world > 1:
        from hsd.watchdog import PeerWatch

        _WATCH.append(PeerWatch.start(rank, world, peer_timeout_s))
    return DistEnv(rank, world, _env_int("LOCAL_WORLD_SIZE", world), True, device)


def announce_failure(exc: BaseException) -> BaseException:
    """Tell the other ranks that this one failed, so they stop instead of waiting in a collective;
    returns the error to raise: ``exc``, or the other rank's failure when this error is only its
    echo (gloo's "connection closed" once that rank left).

    An error every rank raised together (from :func:`main_only`) needs no telling, nor does a
    deliberate exit (``SystemExit``: the preemption exit 75 that all ranks agreed on); a rank
    that exits alone is found by its missing heartbeat.
    """
    if not _WATCH or getattr(exc, "hsd_all_ranks", False) or isinstance(exc, SystemExit):
        return exc
    from hsd.watchdog import PeerFailedError

    earlier = _WATCH[-1].peer_failure()
    if earlier is not None:
        _WATCH[-1].stop()
        return PeerFailedError(f"rank {_WATCH[-1].rank} stops the job: {earlier}")
    _WATCH[-1].announce(f"{type(exc).__name__}: {exc}")
    return exc


@contextmanager
def session(device_kind: str, always: bool = False, peer_timeout_s: float = PEER_TIMEOUT_S) -> Iterator[DistEnv]:
    """:func:`init_distributed`, then the body; a failure is announced to the other ranks (and an
    error that only echoes another rank's failure is replaced by that one), and the group is torn
    down either way. The job entry points (validate, the fault tests' worker) run inside it."""
    env = init_distributed(device_kind, always=always, peer_timeout_s=peer_timeout_s)
    ok = False
    try:
        yield env
        ok = True
    except BaseException as exc:
        cause = announce_failure(exc)  # the other ranks stop now, not at the collective timeout
        if cause is not exc:  # this error only echoes another rank's failure: report that one
            raise cause from exc
        raise
    finally:
        teardown(env, ok)


def teardown(env: DistEnv, ok: bool = True) -> None:
    """Stop the watchdog and destroy the group we created (else launchers may exit 250).

    After a failure (``ok=False``) there is no barrier: the other ranks may never reach it.
    """
    if not env.initialized_here:
        return
    import torch.distributed as dist

    try:
        if ok and dist.is_initialized() and env.distributed:
            dist.barrier()  # every rank is done: a peer leaving now is no failure
    finally:
        while _WATCH:
            _WATCH.pop().stop()
        if dist.is_initialized():
            dist.destroy_process_group()
            _forget_deepspeed_groups()


def _forget_deepspeed_groups() -> None:
    # DeepSpeed caches sub-groups of the process group in module globals; once the group is
    # destroyed they are dangling, and a second run in this process would use them.
    try:
        from deepspeed.utils import groups
    except ImportError:
        return
    for name, value in list(vars(groups).items()):
        if name.startswith("_") and name.endswith(("_GROUP", "_GROUP_RANKS")) and name.isupper():
            setattr(groups, name, {} if isinstance(value, dict) else None)


def _ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _ready():
        import torch.distributed as dist

        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects only)."""
    if not _ready():
        return obj
    import torch.distributed as dist

    box = [obj if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not _ready():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def portable_error(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (to cross to the other ranks), else an HsdError saying it.

    ``copy.deepcopy`` takes it apart and rebuilds it through the same ``__reduce_ex__`` protocol
    that pickling on this rank and unpickling on the others use (an exception whose ``__init__``
    does not take its ``args``, or that holds a lock or a socket, fails here too), without
    importing pickle into hsd (tests/unit/test_safe_loading.py)."""
    try:
        copy.deepcopy(exc)
        if _importable(type(exc)):  # pickling sends a class by name: the other rank must find it
            return exc
    except Exception:  # noqa: BLE001 - any exception that cannot be rebuilt
        pass
    return HsdError(f"rank 0: {type(exc).__name__}: {exc}")


def _importable(cls: type) -> bool:
    """Whether ``cls`` can be found again by its module and qualified name (as unpickling does)."""
    import importlib

    try:
        obj: Any = importlib.import_module(cls.__module__)
        for part in cls.__qualname__.split("."):
            obj = getattr(obj, part)
        return obj is cls
    except (ImportError, AttributeError):
        return False


def main_only(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 and hand every rank its result — or its error (any exception), so
    that a problem found on rank 0 stops all ranks with the same message instead of leaving
    them in the next collective."""
    import torch.distributed as dist

    result: Optional[Any] = None
    error: Optional[Exception] = None
    if not _ready() or dist.get_rank() == 0:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            error = exc
    if _ready():
        result, error = broadcast((result, None if error is None else portable_error(error)))
    if error is not None:
        error.hsd_all_ranks = True  # type: ignore[attr-defined]  # see announce_failure
        raise error
    return result
