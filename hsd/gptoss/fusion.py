"""Small element-wise kernels fused by ``torch.compile``, with an eager way out.

hsd's decode attention and its experts each spend most of their time in element-wise passes
over large intermediates (BENCHMARKS.md); compiling a few lines per stage fuses each stage into
one or a few kernels. The rule, shared by both kernel families (:data:`ATTENTION`,
:data:`EXPERTS`): compiled once per process with dynamic shapes, on CUDA only (on CPU, in the
tests, the same functions run eagerly so results equal transformers' there); switched off by
``model.compile_attention`` / ``model.compile_experts`` (set when a model is loaded,
:mod:`hsd.gptoss.kernels`: one process serves one model config); and a compiler failure is
warned about once and the family continues uncompiled, since it must not stop an evaluation.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)


class Fusion:
    """One family of compiled stages: ``fusion(name, fn, cuda, *args)`` is ``fn(*args)``, fused."""

    def __init__(self, what: str) -> None:
        self.what = what  # for the warning
        self.enabled = True  # model.compile_attention / model.compile_experts
        self.broken: Optional[str] = None  # the compiler's error, once it failed: eager from then on
        self._compiled: dict[str, Callable[..., Any]] = {}

    def __call__(self, name: str, fn: Callable[..., Any], cuda: bool, *args: Any) -> Any:
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


ATTENTION = Fusion("decode attention")  # hsd.gptoss.attention, hsd.gptoss.prefix_attention
EXPERTS = Fusion("hsd_grouped experts")  # hsd.gptoss.experts
