"""``experts_implementation: hsd_grouped`` — gpt-oss MoE experts with fused element-wise work.

Profiled on the H100 (score mode, batch 64 x 1k tokens, BENCHMARKS.md), transformers'
``grouped_mm`` experts spent ~24% of the time in the two grouped GEMMs and over half in
element-wise passes over the (tokens x 4, 5,760) intermediate: a per-row bias gather, three
sentinel ``masked_fill`` copies (for expert parallelism, unused here), the gate's clamp /
sigmoid / multiply chain, the routing-weight multiply. Here the GEMMs are the same
(``torch._grouped_mm`` via transformers' helper) and each element-wise stage is one fused
kernel (``torch.compile`` of a few lines, dynamic shapes, compiled once per process).

Inference only: under autograd (training) and for layouts other than gpt-oss's it defers to
transformers' ``grouped_mm``. On CPU (tests) the same functions run uncompiled, so results
equal ``grouped_mm``'s there; on GPU they differ by bf16 rounding (fused kernels round once).
If compilation fails the process warns once and continues uncompiled.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger(__name__)
EXPERTS_NAME = "hsd_grouped"
_COMPILED: dict[str, Callable[..., Any]] = {}
_BROKEN: list[str] = []  # set once compilation failed: stay eager for the rest of the process


def _gate(h: Any, bias: Any, ids: Any, alpha: float, limit: float) -> Any:
    """gpt-oss GLU on interleaved (gate, up) columns, bias added first (GptOssExperts._apply_gate)."""
    import torch

    h = h + bias[ids]
    gate, up = h[..., ::2], h[..., 1::2]
    gate = gate.clamp(max=limit)
    up = up.clamp(min=-limit, max=limit)
    return (up + 1) * (gate * torch.sigmoid(gate * alpha))


def _combine(out: Any, bias: Any, ids: Any, weights: Any, inv: Any, tokens: int, k: int) -> Any:
    """Down-projection bias, routing weight, back to token order, sum over the k experts."""
    out = (out + bias[ids]) * weights.unsqueeze(-1)
    return out[inv].view(tokens, k, -1).sum(dim=1)


def _fn(name: str, fn: Callable[..., Any], cuda: bool) -> Callable[..., Any]:
    if not cuda or _BROKEN:
        return fn
    if name not in _COMPILED:
        import torch

        _COMPILED[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _COMPILED[name]


def _call(name: str, fn: Callable[..., Any], cuda: bool, *args: Any) -> Any:
    try:
        return _fn(name, fn, cuda)(*args)
    except Exception as exc:  # noqa: BLE001 - a compiler problem must not stop an evaluation
        if not cuda or _BROKEN:
            raise
        _BROKEN.append(repr(exc))
        log.warning("hsd_grouped experts: torch.compile failed (%s); continuing uncompiled", exc)
        return fn(*args)


def hsd_grouped_experts_forward(self: Any, hidden_states: Any, top_k_index: Any, top_k_weights: Any) -> Any:
    import torch
    from transformers.integrations.moe import _grouped_mm, grouped_mm_experts_forward

    gpt_oss_layout = self.has_gate and self.has_bias and self.is_transposed and not self.is_concatenated
    if torch.is_grad_enabled() or not gpt_oss_layout:
        return grouped_mm_experts_forward(self, hidden_states, top_k_index, top_k_weights)
    cuda = hidden_states.device.type == "cuda"
    tokens, k = top_k_index.shape
    ids, perm = torch.sort(top_k_index.reshape(-1))
    x = hidden_states[perm // k]
    counts = torch.histc(ids.int() if cuda else ids.float(), bins=self.num_experts, min=0, max=self.num_experts - 1)
    offsets = torch.cumsum(counts, dim=0, dtype=torch.int32)  # histc, not bincount: no host sync (CUDA graphs)
    h = _grouped_mm(x, self.gate_up_proj, offsets)
    h = _call("gate", _gate, cuda, h, self.gate_up_proj_bias, ids, self.alpha, self.limit)
    out = _grouped_mm(h, self.down_proj, offsets)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    weights = top_k_weights.reshape(-1)[perm].to(out.dtype)
    return _call("combine", _combine, cuda, out, self.down_proj_bias, ids, weights, inv, tokens, k)


def register_experts() -> str:
    """Make ``experts_implementation=hsd_grouped`` known to transformers (idempotent)."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    ALL_EXPERTS_FUNCTIONS.register(EXPERTS_NAME, hsd_grouped_experts_forward)
    return EXPERTS_NAME
