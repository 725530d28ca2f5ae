"""Small element-wise kernels fused by ``torch.compile``, with an eager way out.

hsd's decode attention and its experts each spend most of their time in element-wise passes
over large intermediates (BENCHMARKS.md); compiling a few lines per stage fuses each stage into
one or a few kernels. The rule, shared by both kernel families (:data:`ATTENTION`,
:data:`EXPERTS`): compiled once per process with dynamic shapes, on CUDA only (on CPU, in the
tests, the same functions run eagerly so results equal transformers' there); switched off by
``model.compile_attention`` / ``model.compile_experts`` (set when a model is loaded,
:mod:`hsd.gptoss.kernels`: one process serves one model config); and a compiler failure is
warned about once and the family continues uncompiled, since it must not stop an evaluation.

Uncompiled on CUDA, a family may name a module of hand-written kernels (``handwritten``): a stage
with a function of its name there runs that instead of the eager lines (the experts' Triton
kernels, :mod:`hsd.gptoss.triton_experts`, and the decode attention's,
:mod:`hsd.gptoss.triton_attention`: no compile at start-up). The module is imported on first
use; if it cannot be, or a kernel fails its first call (Triton's compile), the family warns once and
runs those stages eagerly.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)


class Fusion:
    """One family of compiled stages: ``fusion(name, fn, cuda, *args)`` is ``fn(*args)``, fused."""

    def __init__(self, what: str, handwritten: Optional[str] = None) -> None:
        self.what = what  # for the warning
        self.enabled = True  # model.compile_attention / model.compile_experts
        self.broken: Optional[str] = None  # the compiler's error, once it failed: eager from then on
        self._compiled: dict[str, Callable[..., Any]] = {}
        self.handwritten = handwritten  # module of kernels by stage name, used uncompiled on CUDA
        self._kernels: dict[str, Optional[Callable[..., Any]]] = {}  # None: eager (none, or it failed)

    def __call__(self, name: str, fn: Callable[..., Any], cuda: bool, *args: Any) -> Any:
        if cuda and not self.enabled and self.handwritten:
            return self._handwritten(name, fn, *args)
        if not cuda or not self.enabled or self.broken:
            return fn(*args)
        from torch._dynamo.exc import TorchDynamoException  # compiler failures (inductor's included)

        if name not in self._compiled:  # always called outside autograd (experts: inside their Functions)
            import torch

            self._compiled[name] = torch.compile(fn, dynamic=True, fullgraph=True)
        try:
            return self._compiled[name](*args)
        except TorchDynamoException as exc:
            # Only compiler errors: anything else raised while the compiled code runs is the
            # caller's — e.g. gradient checkpointing ends a recomputation early by raising through
            # it (caught here, the fallback would re-run a recomputation that already ended).
            self.broken = repr(exc)
            log.warning("%s: torch.compile failed (%s); continuing uncompiled", self.what, exc)
            return fn(*args)

    def _handwritten(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        if name not in self._kernels:  # the first call of a stage: import the module, compile the kernel
            return self._first_call(name, fn, *args)
        kernel = self._kernels[name]
        return kernel(*args) if kernel else fn(*args)

    def _first_call(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        self._kernels[name] = None
        try:
            kernel = getattr(importlib.import_module(self.handwritten), name, None)
        except Exception as exc:  # noqa: BLE001 — e.g. no triton: every stage of the family runs eagerly
            log.warning("%s: hand-written kernels unavailable (%s); continuing with eager torch", self.what, exc)
            self.handwritten = None
            return fn(*args)
        if kernel is None:  # no kernel of this name (a backward): eager, no guard around the caller's code
            return fn(*args)
        try:
            result = kernel(*args)
        except Exception as exc:  # noqa: BLE001 — Triton's compile, a driver refusing the kernel
            log.warning("%s: the hand-written %s kernel failed (%s); continuing with eager torch", self.what,
                        name, exc)
            return fn(*args)
        self._kernels[name] = kernel
        return result


ATTENTION = Fusion("decode attention", handwritten="hsd.gptoss.triton_attention")  # hsd.gptoss.attention
EXPERTS = Fusion("hsd_grouped experts", handwritten="hsd.gptoss.triton_experts")  # hsd.gptoss.experts
