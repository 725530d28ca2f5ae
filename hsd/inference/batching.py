"""Length-sorted batches and the halve-on-OOM retry.

Sorting by prompt length keeps left padding (wasted compute) small; longest first means an
out-of-memory error, if one comes, comes in the first batch rather than after an hour.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


def length_sorted_batches(keys: Sequence[str], lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches, longest first; ties broken by key so order is stable."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(keys)), key=lambda i: (-lengths[i], keys[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def is_cuda_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError)


def empty_cuda_cache() -> None:
    """After an out-of-memory error: hand the allocator's cached blocks back before the retry."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class OomHalving:
    """The one out-of-memory rule of every batch loop: halve and retry the unfinished part.

    After a CUDA out-of-memory error at ``at`` rows, :meth:`halve` makes ``size`` ``at // 2``
    (logged; ``on_oom`` then frees what it can, e.g. the allocator's cache) and the caller
    retries what is not done yet at that size; at 1 row it returns False and the caller raises:
    the model does not fit. The size is kept for later batches (a batch that ran out of memory
    once will on the next similar batch too). Used by :class:`OomBackoff` (one rank's chunks),
    :class:`hsd.inference.lockstep.LockstepBackoff` (every rank's, after they agree) and the hf
    backend's refill loop (its slots).
    """

    def __init__(self, size: Optional[int], on_oom: Callable[[], None] | None = None,
                 is_oom: Callable[[BaseException], bool] = is_cuda_oom,
                 message: str = "out of memory at batch size {at}; retrying with {size}") -> None:
        self.size = size  # None: the caller's own default (the refill loop: slots sized by memory)
        self.is_oom = is_oom
        self._on_oom = on_oom
        self._message = message  # str.format'd with at, size and halve()'s keyword arguments

    def retry(self, exc: BaseException, at: int) -> bool:
        """:meth:`halve` if ``exc`` is an out-of-memory error; False (raise it) otherwise."""
        return self.is_oom(exc) and self.halve(at)

    def halve(self, at: int, **context: Any) -> bool:
        """Out of memory at ``at`` rows: continue at half (True), or False at 1 row."""
        if at <= 1:
            return False
        self.size = max(1, at // 2)
        log.warning(self._message.format(at=at, size=self.size, **context))
        if self._on_oom is not None:
            self._on_oom()
        return True


class OomBackoff(OomHalving):
    """Run ``fn`` on chunks of a batch of ``size`` items; on CUDA OOM halve the chunk and retry it."""

    def __init__(self, batch_size: int, is_oom: Callable[[BaseException], bool] = is_cuda_oom,
                 on_oom: Callable[[], None] | None = None) -> None:
        super().__init__(batch_size, on_oom=on_oom, is_oom=is_oom)

    def __call__(self, items: Sequence[T], fn: Callable[[Sequence[T]], list[R]]) -> list[R]:
        out: list[R] = []
        start = 0
        while start < len(items):
            chunk = items[start : start + self.size]
            try:
                out.extend(fn(chunk))
            except Exception as exc:  # noqa: BLE001 - re-raised unless it is an OOM we can shrink
                if not self.retry(exc, len(chunk)):
                    raise
                continue
            start += len(chunk)
        return out
