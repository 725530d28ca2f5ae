"""The experts' two element-wise stages as one hand-written Triton kernel each (inference, CUDA).

Why: uncompiled (``model.compile_experts`` is off for inference, since compiling cost ~14 s of
every ``hsd validate``), the gate ran as ~10 kernels over the (rows, 5,760) GEMM output (bias
gather, add, two clamps, sigmoid, four multiplies/adds) and the combine as ~5; profiled on the
H100 they took 2.5 and 1.1 ms of a 37.3 ms 512-row decode step (BENCHMARKS.md, issue 29), ~10x
what reading their inputs once costs. Here each stage reads its inputs once and writes its output
once. Triton compiles a kernel once per dtype on first use (before any CUDA graph capture: the
decoders warm up first) and keeps it in its on-disk cache (:func:`hsd.paths.use_compile_cache`):
no dynamo, no per-shape recompiles. Arithmetic is fp32, rounded once on the store — as the
compiled stages do; eager rounds after every op, so the two differ by bf16 rounding on GPU.

Forward only: training's stages stay the autograd Functions of :mod:`hsd.gptoss.experts`.
``TRITON_INTERPRET=1`` runs the same kernels on CPU tensors (the tests).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

BLOCK = 1024  # columns per program: the 2,880-wide rows in three masked blocks


@triton.jit
def _gate_kernel(h, bias, ids, out, width, alpha, limit, BLOCK: tl.constexpr):
    """out[r, c] = (clamp(up) + 1) * g * sigmoid(alpha * g), g = min(gate, limit); (gate, up) are
    the interleaved columns 2c and 2c + 1 of h[r] + bias[ids[r]]."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    keep = cols < width
    src = h + row * 2 * width + 2 * cols
    add = bias + tl.load(ids + row).to(tl.int64) * 2 * width + 2 * cols
    gate = tl.load(src, mask=keep).to(tl.float32) + tl.load(add, mask=keep).to(tl.float32)
    up = tl.load(src + 1, mask=keep).to(tl.float32) + tl.load(add + 1, mask=keep).to(tl.float32)
    gate = tl.minimum(gate, limit, propagate_nan=tl.PropagateNan.ALL)
    up = tl.minimum(tl.maximum(up, -limit, propagate_nan=tl.PropagateNan.ALL), limit,
                    propagate_nan=tl.PropagateNan.ALL)
    value = (up + 1.0) * (gate * tl.sigmoid(gate * alpha))
    tl.store(out + row * width + cols, value.to(out.dtype.element_ty), mask=keep)


@triton.jit
def _combine_kernel(out, bias, ids, weights, inv, result, width, K: tl.constexpr, BLOCK: tl.constexpr):
    """result[t, c] = sum over j < K of (out[r, c] + bias[ids[r], c]) * weights[r], r = inv[t * K + j]."""
    token = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    keep = cols < width
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for j in tl.static_range(K):
        row = tl.load(inv + token * K + j).to(tl.int64)
        expert = tl.load(ids + row).to(tl.int64)
        value = tl.load(out + row * width + cols, mask=keep).to(tl.float32)
        value += tl.load(bias + expert * width + cols, mask=keep).to(tl.float32)
        acc += value * tl.load(weights + row).to(tl.float32)
    tl.store(result + token * width + cols, acc.to(result.dtype.element_ty), mask=keep)


def gate(h: Any, bias: Any, ids: Any, alpha: float, limit: float) -> Any:
    """:func:`hsd.gptoss.experts._gate` in one kernel: (rows, 2 * width) -> (rows, width)."""
    rows, width = h.shape[0], h.shape[1] // 2
    out = torch.empty((rows, width), dtype=h.dtype, device=h.device)
    if rows:
        grid = (rows, triton.cdiv(width, BLOCK))
        _gate_kernel[grid](h.contiguous(), bias.contiguous(), ids.contiguous(), out, width, float(alpha),
                           float(limit), BLOCK=BLOCK)
    return out


def combine(out: Any, bias: Any, ids: Any, weights: Any, inv: Any, tokens: int, k: int) -> Any:
    """:func:`hsd.gptoss.experts._combine` in one kernel: (tokens * k, width) -> (tokens, width)."""
    width = out.shape[1]
    result = torch.empty((tokens, width), dtype=out.dtype, device=out.device)
    if tokens:
        grid = (tokens, triton.cdiv(width, BLOCK))
        _combine_kernel[grid](out.contiguous(), bias.contiguous(), ids.contiguous(), weights.contiguous(),
                              inv.contiguous(), result, width, K=k, BLOCK=BLOCK)
    return result
