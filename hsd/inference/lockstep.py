"""Batches for lock-step backends: every rank makes the same calls, and they agree after each.

In the ``deepspeed`` (ZeRO-3) and ``tp`` (tensor/expert parallel) backends every forward pass
is a collective, so a rank that stops calling the model — because it ran out of memory, hit an
error, or has no samples left — would leave the others waiting inside a collective for ever.
:class:`LockstepBackoff` runs a batch as *steps*, identical on every rank:

1. ``prepare(chunk)`` — local work only (tokenising, copying inputs to the device). A rank with
   nothing left prepares an empty chunk and joins the step all the same.
2. one all-reduce (MAX) of ``[has_work, status]``: nobody has work -> done; any rank failed to
   prepare -> every rank skips step 3.
3. ``run(prepared)`` — the collective work (``generate`` / score forward passes).
4. one all-reduce (MAX) of the status: ``0`` ok, ``1`` out of memory, ``2`` another error.
   Out of memory anywhere: *every* rank halves the chunk size and retries the same chunk (the
   rule of :class:`~hsd.inference.batching.OomHalving`, as the ``hf`` backend applies it on one
   rank); at size 1 every rank raises. Any other error anywhere: every rank raises (the failing
   rank its own error), so the job ends instead of hanging.

The agreement runs on its own gloo group with a bounded timeout: a rank that is gone (killed,
or stuck where the others cannot reach it) turns into an error on the ranks waiting in the
agreement — at once when its connection closes (gloo sees a killed peer), else after
``AGREE_TIMEOUT_MIN`` — not after the job's 2-hour process-group timeout. A rank that dies while
the others wait inside one of the *model's* NCCL collectives is that group's business (NCCL's
error handling, or the launcher: torchrun ends the job when a rank exits).

Limit (said plainly): an out-of-memory error raised *inside* step 3 on one rank only, while the
others continue into the model's next collective, cannot be rejoined — the model's collective
and the agreement no longer pair up. The tensor-parallel backend runs identical shapes on
every rank, so its out-of-memory errors come on every rank at the same allocation (handled);
with ZeRO-3 each rank runs its own inputs, and such a one-rank error ends the job (after the
agreement timeout) rather than being retried.

``HSD_INJECT_FAULT=oom:<rank>:<attempt>`` (or ``kill:...``) makes ``<rank>`` raise
``torch.OutOfMemoryError`` once (or SIGKILL itself) when preparing its ``<attempt>``-th
non-empty chunk (1-based): the fault tests use it through ``hsd validate`` itself.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, TypeVar

from hsd.errors import HsdError
from hsd.inference.batching import OomHalving

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

FAULT_ENV = "HSD_INJECT_FAULT"
AGREE_TIMEOUT_MIN = 30  # longer than any one step can take when ranks are in lock-step
OK, OOM, ERROR = 0, 1, 2


class Agreement:
    """All-reduce (MAX) of small integer vectors over a dedicated gloo group (identity alone)."""

    def __init__(self, timeout_min: int = AGREE_TIMEOUT_MIN) -> None:
        import torch.distributed as dist

        self.group: Any = None
        self.world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.distributed = self.world_size > 1
        if self.distributed:  # collective: every rank builds its backend, hence this group, in order
            self.group = dist.new_group(backend="gloo", timeout=_dt.timedelta(minutes=timeout_min))

    def max(self, values: Sequence[int]) -> list[int]:
        if not self.distributed:
            return list(values)
        import torch
        import torch.distributed as dist

        t = torch.tensor(list(values), dtype=torch.long)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return [int(v) for v in t.tolist()]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's picklable ``obj``, in rank order (over gloo: no GPU memory, no NCCL)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj, group=self.group)
        return out


@dataclass(frozen=True)
class Fault:
    """An injected fault (``HSD_INJECT_FAULT``): ``kind`` on ``rank`` at its ``attempt``-th chunk."""

    kind: str  # "oom" | "kill"
    rank: int
    attempt: int

    @classmethod
    def from_env(cls) -> Optional["Fault"]:
        raw = os.environ.get(FAULT_ENV, "").strip()
        if not raw:
            return None
        parts = raw.split(":")
        if len(parts) != 3 or parts[0] not in ("oom", "kill") or not all(p.isdigit() for p in parts[1:]):
            raise HsdError(f"{FAULT_ENV}={raw!r}: expected oom:<rank>:<attempt> or kill:<rank>:<attempt> "
                           "(a test hook; unset it for real runs)")
        return cls(parts[0], int(parts[1]), int(parts[2]))


class _Step:
    """What a step returns instead of outputs."""

    DONE: Any = object()  # nobody has work left
    RETRY: Any = object()  # out of memory somewhere: the chunk size was halved


class LockstepBackoff(OomHalving):
    """Run this rank's items in chunks, in lock-step with the other ranks (module docstring)."""

    def __init__(self, batch_size: int, rank: int, agreement: Agreement,
                 on_oom: Callable[[], None] | None = None) -> None:
        super().__init__(batch_size, on_oom=on_oom, message="rank {rank}: out of memory on {where} at batch size "
                                                            "{at}; every rank retries with {size}")
        self.rank = rank
        self.agreement = agreement
        self._fault = Fault.from_env()
        self._attempts = 0  # non-empty chunks prepared by this rank (the fault hook counts them)

    def __call__(self, items: Sequence[T], prepare: Callable[[Sequence[T]], Any],
                 run: Callable[[Any], list[R]]) -> list[R]:
        out: list[R] = []
        start = 0
        while start < len(items):
            chunk = items[start : start + self.size]
            result = self._step(chunk, prepare, run)
            if result is _Step.RETRY:
                continue
            out.extend(result)
            start += len(chunk)
        return out

    def finish(self, prepare: Callable[[Sequence[Any]], Any], run: Callable[[Any], list[Any]]) -> None:
        """Join the other ranks' remaining steps with empty chunks until nobody has work."""
        while self._step([], prepare, run) is not _Step.DONE:
            pass

    def _step(self, chunk: Sequence[Any], prepare: Callable[[Sequence[Any]], Any],
              run: Callable[[Any], list[Any]]) -> Any:
        state, result, status, error = None, None, OK, None
        try:
            self._inject(chunk)
            state = prepare(chunk)
        except Exception as exc:  # noqa: BLE001 - every rank learns of it below, then it is re-raised
            status, error = self._status(exc), exc
        anyone, worst = self.agreement.max([int(bool(chunk)), status])
        if not anyone:
            return _Step.DONE
        if worst == OK:
            try:
                result = run(state)
            except Exception as exc:  # noqa: BLE001
                status, error = self._status(exc), exc
            (worst,) = self.agreement.max([status])
        if worst == OK:
            return result
        return self._failed(worst, error, len(chunk))

    def _failed(self, worst: int, error: Optional[BaseException], chunk_len: int) -> Any:
        """Every rank reaches this after the same agreement: halve and retry, or raise together."""
        where = "this rank" if error is not None else "another rank"
        if worst == OOM and self.halve(self.size, rank=self.rank, where=where):
            return _Step.RETRY
        if error is not None:
            raise error
        what = "ran out of memory at batch size 1 (the model does not fit)" if worst == OOM else "failed"
        raise HsdError(f"another rank {what}; rank {self.rank} stops with it (that rank's log has the error)")

    def _status(self, exc: BaseException) -> int:
        return OOM if self.is_oom(exc) else ERROR

    def _inject(self, chunk: Sequence[Any]) -> None:
        if not chunk:
            return
        self._attempts += 1
        f = self._fault
        if f is None or f.rank != self.rank or f.attempt != self._attempts:
            return
        if f.kind == "kill":
            log.warning("rank %d: %s: SIGKILL at attempt %d", self.rank, FAULT_ENV, self._attempts)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)
        import torch

        log.warning("rank %d: %s: out of memory injected at attempt %d", self.rank, FAULT_ENV, self._attempts)
        raise torch.OutOfMemoryError(f"{FAULT_ENV}: injected on rank {self.rank}, attempt {self._attempts}")


def log_partition(model: Any, rank: int) -> None:
    """Log how much of the model this rank holds: ZeRO-3 partitions, DTensor shards, or all of it."""
    held = total = 0
    for p in model.parameters():
        local = getattr(p, "ds_tensor", None)
        if local is None and hasattr(p, "to_local"):
            local = p.to_local()
        held += (local if local is not None else p).numel()
        total += getattr(p, "ds_numel", None) or p.numel()
    log.info("rank %d holds %d of %d parameters (%.1f%%)", rank, held, total, 100.0 * held / max(total, 1))
