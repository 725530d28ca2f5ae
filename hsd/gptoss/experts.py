"""``experts_implementation: hsd_grouped`` — gpt-oss MoE experts with fused element-wise work.

Profiled on the H100 (score mode, batch 64 x 1k tokens, BENCHMARKS.md), transformers'
``grouped_mm`` experts spent ~24% of the time in the two grouped GEMMs and over half in
element-wise passes over the (tokens x 4, 5,760) intermediate: a per-row bias gather, three
sentinel ``masked_fill`` copies (for expert parallelism, unused here), the gate's clamp /
sigmoid / multiply chain, the routing-weight multiply. Here the GEMMs are the same
(``torch._grouped_mm`` via transformers' helper) and each element-wise stage is one fused
kernel (``torch.compile`` of a few lines, dynamic shapes, compiled once per process).

Training uses the same kernels: the gate and the combine are autograd Functions whose
backward is written out (``_gate_backward``, ``_combine_backward``) and compiled like the
forward, so autograd keeps only each stage's inputs instead of every element-wise
intermediate, and no joint forward/backward graph has to be compiled (that took ~50-75 s of
the first training step on the H100; these four small graphs take ~20 s cold, ~5 s from
torch's on-disk compile cache). ``model.compile_experts: false`` runs the same stages
uncompiled: no compile at start-up, ~5-20% slower steps (BENCHMARKS.md); on CUDA their forwards
are then hand-written Triton kernels (:mod:`hsd.gptoss.triton_experts`). Layouts other than
gpt-oss's defer to transformers' ``grouped_mm``. On CPU (tests) the stages run uncompiled, so
results and gradients equal transformers' there (``tests/integration/test_experts_grad.py``); on
GPU they differ by bf16 rounding (fused kernels round once). If compilation fails the process
warns once and continues uncompiled (:mod:`hsd.gptoss.fusion`).
"""

from __future__ import annotations

import functools
from typing import Any

from hsd.gptoss.fusion import EXPERTS

EXPERTS_NAME = "hsd_grouped"


def _gate(h: Any, bias: Any, ids: Any, alpha: float, limit: float) -> Any:
    """gpt-oss GLU on interleaved (gate, up) columns, bias added first (GptOssExperts._apply_gate)."""
    import torch

    h = h + bias[ids]
    gate, up = h[..., ::2], h[..., 1::2]
    gate = gate.clamp(max=limit)
    up = up.clamp(min=-limit, max=limit)
    return (up + 1) * (gate * torch.sigmoid(gate * alpha))


def _gate_backward(grad: Any, h: Any, bias: Any, ids: Any, alpha: float, limit: float) -> Any:
    """d _gate / d h, written out: what autograd would compute through each element-wise op
    (a clamp passes the gradient where its input is inside its bounds, ends included)."""
    import torch

    h = h + bias[ids]
    gate, up = h[..., ::2], h[..., 1::2]
    gated = gate.clamp(max=limit)
    sig = torch.sigmoid(gated * alpha)
    d_up = grad * (gated * sig) * ((up >= -limit) & (up <= limit))
    d_gate = grad * (up.clamp(min=-limit, max=limit) + 1) * (sig + gated * alpha * sig * (1 - sig)) * (gate <= limit)
    return torch.stack((d_gate, d_up), dim=-1).flatten(-2)  # back to interleaved columns


def _combine(out: Any, bias: Any, ids: Any, weights: Any, inv: Any, tokens: int, k: int) -> Any:
    """Down-projection bias, routing weight, back to token order, sum over the k experts."""
    out = (out + bias[ids]) * weights.unsqueeze(-1)
    return out[inv].view(tokens, k, -1).sum(dim=1)


def _combine_backward(grad: Any, out: Any, bias: Any, ids: Any, weights: Any, token_of_row: Any) -> tuple[Any, Any]:
    """(d out, d weights) of :func:`_combine`; row r of ``out`` went to token ``token_of_row[r]``."""
    grad = grad[token_of_row]
    d_weights = (grad.float() * (out + bias[ids]).float()).sum(dim=-1)
    return grad * weights.unsqueeze(-1), d_weights.to(weights.dtype)


def _bias_grad(bias: Any, ids: Any, grad_rows: Any) -> Any:
    """Per-expert bias gradient: the row gradients summed by expert (only when biases train)."""
    import torch

    summed = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
    return summed.index_add_(0, ids, grad_rows.float()).to(bias.dtype)


def _autograd_functions() -> tuple[Any, Any]:
    """The two fused stages as autograd Functions (built on first use: torch imports lazily).

    Saving only the stage inputs and writing the backward out keeps autograd from storing
    every element-wise intermediate, and lets the same compiled no-grad kernels serve
    inference, the forward and the backward of training.
    """
    import torch

    class Gate(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, bias, ids, alpha, limit):
            ctx.save_for_backward(h, bias, ids)
            ctx.alpha, ctx.limit = alpha, limit
            return EXPERTS("gate", _gate, h.is_cuda, h, bias, ids, alpha, limit)

        @staticmethod
        def backward(ctx, grad):
            h, bias, ids = ctx.saved_tensors
            d_h = EXPERTS("gate_backward", _gate_backward, h.is_cuda, grad.contiguous(), h, bias, ids, ctx.alpha,
                          ctx.limit)
            d_bias = _bias_grad(bias, ids, d_h) if ctx.needs_input_grad[1] else None
            return d_h, d_bias, None, None, None

    class Combine(torch.autograd.Function):
        @staticmethod
        def forward(ctx, out, bias, ids, weights, inv, token_of_row, tokens, k):
            ctx.save_for_backward(out, bias, ids, weights, token_of_row)
            return EXPERTS("combine", _combine, out.is_cuda, out, bias, ids, weights, inv, tokens, k)

        @staticmethod
        def backward(ctx, grad):
            out, bias, ids, weights, token_of_row = ctx.saved_tensors
            d_out, d_weights = EXPERTS("combine_backward", _combine_backward, out.is_cuda, grad.contiguous(), out,
                                       bias, ids, weights, token_of_row)
            d_bias = _bias_grad(bias, ids, d_out) if ctx.needs_input_grad[1] else None
            return d_out, d_bias, None, d_weights, None, None, None, None

    return Gate, Combine


_stages = functools.cache(_autograd_functions)  # the (Gate, Combine) classes, defined once


def hsd_grouped_experts_forward(self: Any, hidden_states: Any, top_k_index: Any, top_k_weights: Any) -> Any:
    import torch
    from transformers.integrations.moe import _grouped_mm, grouped_mm_experts_forward

    gpt_oss_layout = self.has_gate and self.has_bias and self.is_transposed and not self.is_concatenated
    if not gpt_oss_layout:
        return grouped_mm_experts_forward(self, hidden_states, top_k_index, top_k_weights)
    cuda = hidden_states.device.type == "cuda"
    tokens, k = top_k_index.shape
    ids, perm = torch.sort(top_k_index.reshape(-1))
    token_of_row = perm // k
    x = hidden_states[token_of_row]
    counts = torch.histc(ids.int() if cuda else ids.float(), bins=self.num_experts, min=0, max=self.num_experts - 1)
    offsets = torch.cumsum(counts, dim=0, dtype=torch.int32)  # histc, not bincount: no host sync (CUDA graphs)
    gate, combine = _stages()
    h = _grouped_mm(x, self.gate_up_proj, offsets)
    h = gate.apply(h, self.gate_up_proj_bias, ids, self.alpha, self.limit)
    out = _grouped_mm(h, self.down_proj, offsets)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    weights = top_k_weights.reshape(-1)[perm].to(out.dtype)
    return combine.apply(out, self.down_proj_bias, ids, weights, inv, token_of_row, tokens, k)


def register_experts() -> str:
    """Make ``experts_implementation=hsd_grouped`` known to transformers (idempotent)."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    ALL_EXPERTS_FUNCTIONS.register(EXPERTS_NAME, hsd_grouped_experts_forward)
    return EXPERTS_NAME
