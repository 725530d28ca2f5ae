"""Attention over a prompt prefix shared by every row, read once per step, not once per row.

The refill decoder (hsd.inference.refill) keeps the ~1,724 tokens every rich prompt shares once,
``(1, kv, P, d)`` in a :class:`hsd.gptoss.slotcache.SlotCache`, and each row's own keys after
it. :func:`shared_prefix_attention` attends to both without expanding the prefix per row: the
prefix part is one attention of batch 1 (a head per KV head, ``rows * group`` queries, no mask)
run by torch's fused flash kernel, which also returns its log-sum-exp, so the
(kv, rows*group, P) score matrix is never written out (as separate passes it was ~30% of a
512-row decode step, tools/refill_probe.py). The own keys' softmax, the sink and the prefix's
log-sum-exp are then combined as one softmax (common max, summed normalisers): equal to
attention over the concatenation. A refill's admit (several query tokens per row, all after
the prefix, so it needs no mask there) takes the same path.
"""

from __future__ import annotations

from typing import Any

import torch


def shared_prefix_attention(query: Any, key: Any, value: Any, mask: Any, sinks: Any, scaling: float,
                            prefix_k: Any, prefix_v: Any) -> Any:
    """``n`` query tokens per row (b, h, n, d) over ``prefix_k/v`` (1, kv, P, d), seen by every
    row, and the row's own ``key/value`` (b, kv, k, d) under ``mask`` (b, 1, n, k); returns
    (b, h, n, d). A decode step has n = 1; a refill's admit has its tails' width (the prefix is
    still read once: expanding it per admitted row and group made admits ~5x their FLOPs)."""
    b, h, n, d = query.shape
    kv, group = key.shape[1], h // key.shape[1]
    q = query.reshape(b, kv, group * n, d)  # heads grouped by their KV head, then query position
    out_pre, lse_pre = prefix_part(q, prefix_k, prefix_v, scaling)  # (1, kv, b*group*n, d), (1, kv, b*group*n)
    out_pre = out_pre[0].view(kv, b, group * n, d).transpose(0, 1)  # (b, kv, group*n, d)
    lse_pre = lse_pre[0].view(kv, b, group, n).transpose(0, 1).unsqueeze(-1).float()  # (b, kv, group, n, 1)
    own = (torch.matmul(q, key.transpose(2, 3)).float() * scaling).view(b, kv, group, n, -1)
    if mask is not None:
        own = own.masked_fill(~mask[:, :, None], float("-inf"))  # (b, 1, 1, n, k): every head alike
    sink = sinks.float().view(1, kv, group, 1, 1)
    top = torch.maximum(torch.maximum(own.amax(-1, keepdim=True), lse_pre), sink)
    e_own, w_pre = torch.exp(own - top), torch.exp(lse_pre - top)
    norm = e_own.sum(-1, keepdim=True) + w_pre + torch.exp(sink - top)
    out = torch.matmul((e_own / norm).to(value.dtype).view(b, kv, group * n, -1), value)  # (b, kv, group*n, d)
    out = out + (out_pre.float() * (w_pre / norm).view(b, kv, group * n, 1)).to(value.dtype)
    return out.view(b, h, n, d)


def prefix_part(q: Any, prefix_k: Any, prefix_v: Any, scaling: float) -> tuple[Any, Any]:
    """Grouped queries ``q`` (b, kv, m, d) over the shared prefix (1, kv, P, d), as one flash
    attention of batch 1 (the rows' queries side by side): output (1, kv, b*m, d) and its
    log-sum-exp (1, kv, b*m), row-major in (row, query)."""
    b, kv, m, d = q.shape
    return attention_with_lse(q.transpose(0, 1).reshape(1, kv, b * m, d), prefix_k, prefix_v, scaling)


def attention_with_lse(q: Any, k: Any, v: Any, scaling: float) -> tuple[Any, Any]:
    """Unmasked attention (b, h, L, d) and its log-sum-exp (b, h, L), from torch's fused flash
    kernel (the one ``scaled_dot_product_attention`` dispatches to; its public API drops the
    log-sum-exp the merge with the own keys needs). CUDA's flash kernel takes half precision
    only: a float32 model on a GPU gets :func:`math_attention_with_lse`."""
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256:
        res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scaling)
        return res[0], res[1]
    if q.is_cuda:
        return math_attention_with_lse(q, k, v, scaling)
    res = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=None,
                                                                     scale=scaling)
    return res[0], res[1]


def math_attention_with_lse(q: Any, k: Any, v: Any, scaling: float) -> tuple[Any, Any]:
    """:func:`attention_with_lse` as plain matmuls (float32 on a GPU; the tests' reference)."""
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scaling
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul(torch.exp(scores - lse.unsqueeze(-1)).to(v.dtype), v), lse
