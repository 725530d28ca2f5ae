"""One-token decode attention with sinks as one hand-written Triton kernel (inference, CUDA).

Why: uncompiled (``model.compile_attention`` is off for inference: compiling cost ~14 s of every
``hsd validate``), a decode step's attention ran ~20 small kernels per layer — the grouped score
GEMM, scaling, mask fill, max, exps, sums, a division, dtype copies, the value GEMM and, on the
refill decoder's full layers, the merge with the shared prefix's flash output — ~5 ms of element-wise
passes in a 37 ms 512-row step on the H100 (BENCHMARKS.md, issue 29). Here a program per (row, KV
head) reads the row's keys and values once and keeps its ``group`` query heads' online softmax in
registers (as flash decoding does), with the head's sink as one more logit (value 0) and, for
:func:`shared`, the prefix's attention output and log-sum-exp as one more (logit, value) pair:
softmax over [own keys, prefix, sink] is the same as attention over their concatenation. The
prefix itself is still one flash attention of batch 1 (:func:`hsd.gptoss.prefix_attention.prefix_part`).

Compiled by Triton once per dtype/shape class on first use (the decoders warm up before capturing
CUDA graphs) and cached on disk (:func:`hsd.paths.use_compile_cache`). Scores and the softmax are
fp32; the probabilities are rounded to the values' dtype, as the eager path does. The two GEMMs run
on fp32 operands: TF32 for a half-precision model (exact — bf16 and fp16 values fit TF32's
mantissa), IEEE fp32 for an fp32 one.
``TRITON_INTERPRET=1`` runs the kernel on CPU tensors (the tests).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from hsd.gptoss.prefix_attention import prefix_part

BLOCK_KEYS = 64  # keys per inner step (a 128-token window: two)


@triton.jit
def _sink_decode_kernel(q, k, v, mask, sinks, pre_out, pre_lse, starts, out,
                        sq_b, sq_h, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n, sm_b, sm_n,
                        spo_h, spo_q, spl_h, spl_q, so_b, so_h, n_keys, scaling,
                        G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, BK: tl.constexpr,
                        HAS_MASK: tl.constexpr, HAS_PREFIX: tl.constexpr, HAS_STARTS: tl.constexpr,
                        PRECISION: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    kvh = tl.program_id(1).to(tl.int64)
    k = k + row * sk_b + kvh * sk_h  # this row's keys and values for this KV head
    v = v + row * sv_b + kvh * sv_h
    if HAS_STARTS:  # a sliding window read in place: the row's keys start at its own column
        first = tl.load(starts + row).to(tl.int64)
        k = k + first * sk_n
        v = v + first * sv_n
    g = tl.arange(0, GP)
    live = g < G  # GP >= 16 rows for tl.dot; the padding heads are computed and dropped
    heads = kvh * G + g
    dims = tl.arange(0, D)
    query = tl.load(q + row * sq_b + heads[:, None] * sq_h + dims[None, :], mask=live[:, None], other=0.0)
    query = query.to(tl.float32)
    top = tl.load(sinks + heads, mask=live, other=0.0).to(tl.float32)  # the sink: a logit with value 0
    norm = tl.full([GP], 1.0, tl.float32)
    acc = tl.zeros([GP, D], tl.float32)
    if HAS_PREFIX:  # the shared prefix's flash output and log-sum-exp: one more (logit, value)
        at = kvh * spl_h + (row * G + g) * spl_q
        lse = tl.load(pre_lse + at, mask=live, other=0.0).to(tl.float32)
        new_top = tl.maximum(top, lse)
        weight = tl.exp(lse - new_top)
        norm = norm * tl.exp(top - new_top) + weight
        prefix = tl.load(pre_out + kvh * spo_h + (row * G + g)[:, None] * spo_q + dims[None, :], mask=live[:, None],
                         other=0.0)
        acc = weight[:, None] * prefix.to(tl.float32)
        top = new_top
    start = 0
    while start < n_keys:  # (a while, not a for over range: Triton's CPU interpreter cannot run that one)
        keys_at = start + tl.arange(0, BK)
        inside = keys_at < n_keys
        keys = tl.load(k + keys_at[:, None] * sk_n + dims[None, :], mask=inside[:, None], other=0.0)
        scores = tl.dot(query, tl.trans(keys.to(tl.float32)), input_precision=PRECISION) * scaling
        if HAS_MASK:
            inside = inside & (tl.load(mask + row * sm_b + keys_at * sm_n, mask=inside, other=0) != 0)
        scores = tl.where(inside[None, :], scores, float("-inf"))
        new_top = tl.maximum(top, tl.max(scores, 1))
        shrink = tl.exp(top - new_top)
        probs = tl.exp(scores - new_top[:, None])
        norm = norm * shrink + tl.sum(probs, 1)
        values = tl.load(v + keys_at[:, None] * sv_n + dims[None, :], mask=inside[:, None], other=0.0)
        probs = probs.to(values.dtype).to(tl.float32)  # rounded to the values' dtype, as eager
        acc = acc * shrink[:, None] + tl.dot(probs, values.to(tl.float32), input_precision=PRECISION)
        top = new_top
        start += BK
    result = acc / norm[:, None]
    tl.store(out + row * so_b + heads[:, None] * so_h + dims[None, :], result.to(out.dtype.element_ty),
             mask=live[:, None])


def _attend(query: Any, key: Any, value: Any, mask: Any, sinks: Any, scaling: float,
            prefix: tuple[Any, Any] | None, starts: Any = None) -> Any:
    """(b, h, 1, d) queries over their row's (b, kv, k, d) keys (and the prefix pair) -> (b, h, 1, d),
    laid out as (b, 1, h, d) underneath: the caller's transpose to (b, 1, h, d) is then free. With
    ``starts`` (b,), row r reads the mask's width of keys from column ``starts[r]`` of its store."""
    b, h, _, d = query.shape
    kv, n_keys = key.shape[1], (key.shape[2] if starts is None else mask.shape[-1])
    group = h // kv
    query, key, value = (t if t.stride(-1) == 1 else t.contiguous() for t in (query, key, value))
    out = torch.empty((b, 1, h, d), dtype=query.dtype, device=query.device)
    if mask is not None:
        mask = mask[:, 0, 0, :].view(torch.uint8)  # (b, k): every head alike
    pre_out, pre_lse = prefix if prefix is not None else (None, None)
    _sink_decode_kernel[(b, kv)](
        query, key, value, _or(mask, out), sinks, _or(pre_out, out), _or(pre_lse, out), _or(starts, out),
        out,  # out: an unread stand-in for what is absent
        query.stride(0), query.stride(1), key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2),
        *_strides(mask, 0, 1), *_strides(pre_out, 1, 2), *_strides(pre_lse, 1, 2),
        h * d, d, n_keys, float(scaling),
        G=group, GP=max(16, triton.next_power_of_2(group)), D=d, BK=BLOCK_KEYS,
        HAS_MASK=mask is not None, HAS_PREFIX=prefix is not None, HAS_STARTS=starts is not None,
        PRECISION="ieee" if query.dtype == torch.float32 else "tf32",
    )
    return out.transpose(1, 2)


def _or(tensor: Any, stand_in: Any) -> Any:
    return stand_in if tensor is None else tensor


def _strides(tensor: Any, *dims: int) -> tuple[int, ...]:
    """``tensor``'s strides along ``dims``; zeros for an absent tensor (its kernel branch is compiled out)."""
    return tuple(0 if tensor is None else tensor.stride(d) for d in dims)


def decode(query: Any, key: Any, value: Any, mask: Any, sinks: Any, scaling: float) -> Any:
    """:func:`hsd.gptoss.attention._decode_attention` in one kernel."""
    return _attend(query, key, value, mask, sinks, scaling, None)


def window(query: Any, key: Any, value: Any, mask: Any, sinks: Any, scaling: float, starts: Any) -> Any:
    """:func:`hsd.gptoss.attention._window_attention` in one kernel, each row's window read in place."""
    return _attend(query, key, value, mask, sinks, scaling, None, starts)


def shared(query: Any, key: Any, value: Any, mask: Any, sinks: Any, scaling: float, prefix_k: Any,
           prefix_v: Any) -> Any:
    """:func:`hsd.gptoss.prefix_attention.shared_prefix_attention` for one query token: the prefix by
    torch's flash kernel (queries grouped as there), the own keys, sink and merge in one kernel."""
    b, h, _, d = query.shape
    kv = key.shape[1]
    prefix = prefix_part(query.reshape(b, kv, h // kv, d), prefix_k, prefix_v, scaling)
    return _attend(query, key, value, mask, sinks, scaling, prefix)
