"""Length-sorted batches and the halve-on-OOM retry.

Sorting by prompt length keeps left padding (wasted compute) small; longest first means an
out-of-memory error, if one comes, comes in the first batch rather than after an hour.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence, TypeVar

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


class OomBackoff:
    """Run ``fn`` on chunks of a batch; on CUDA OOM halve the chunk size and retry.

    The reduced size is kept for later batches (a batch that ran out of memory once will on
    the next similar batch too). At size 1 the error is raised: the model does not fit.
    """

    def __init__(self, batch_size: int, is_oom: Callable[[BaseException], bool] = is_cuda_oom,
                 on_oom: Callable[[], None] | None = None) -> None:
        self.size = batch_size
        self._is_oom = is_oom
        self._on_oom = on_oom

    def __call__(self, items: Sequence[T], fn: Callable[[Sequence[T]], list[R]]) -> list[R]:
        out: list[R] = []
        start = 0
        while start < len(items):
            chunk = items[start : start + self.size]
            try:
                out.extend(fn(chunk))
            except Exception as exc:  # noqa: BLE001 - re-raised unless it is an OOM we can shrink
                if not self._is_oom(exc) or len(chunk) == 1:
                    raise
                self.size = max(1, len(chunk) // 2)
                log.warning("out of memory at batch size %d; retrying with %d", len(chunk), self.size)
                if self._on_oom is not None:
                    self._on_oom()
                continue
            start += len(chunk)
        return out
