"""``attn_implementation: hsd_sinks`` — gpt-oss attention with per-head sinks, without score matrices.

gpt-oss has per-head attention *sinks*, so transformers offers no SDPA for it and its eager
attention materialises every ``(batch, 64 heads, q, k)`` score matrix several times over and
copies the grouped K/V eight-fold (measured on the lent H100, BENCHMARKS.md).
:func:`sinks_attention_forward` is exact and avoids both:

- prefill (q > 1): the sink becomes one extra key. Queries get a constant 1 in an extra
  dimension, the sink key holds ``sink / scale`` there (zero elsewhere) and a zero value, so
  ``q.k_sink * scale == sink`` for every query and SDPA's softmax includes the sink exactly as
  ``eager`` does. SDPA then runs its memory-efficient kernel (no score matrix in memory).
- decode (q == 1): queries are grouped by KV head, ``(b, kv, group, d) @ (b, kv, d, k)``, so
  the cache is read once, never expanded; its element-wise passes are fused
  (:data:`hsd.gptoss.fusion.ATTENTION`: compiled with ``model.compile_attention``, else on CUDA
  one hand-written Triton kernel, :mod:`hsd.gptoss.triton_attention`).
- a prompt prefix shared by every row (the refill decoder's, :mod:`hsd.gptoss.prefix_attention`).
- a sliding layer of the refill decoder's slot cache in a decode step: the keys/values are whole
  per-row stores and each row's window starts at its own column (:meth:`SlotCache.window_starts`); the
  hand-written kernel reads the windows in place, the eager and compiled paths gather them first.

Registered under :data:`ATTN_NAME` with transformers' ``AttentionInterface`` (and a mask
function that always materialises a boolean mask, which the sink column needs).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from hsd.gptoss.fusion import ATTENTION
from hsd.gptoss.prefix_attention import shared_prefix_attention

ATTN_NAME = "hsd_sinks"  # (a name containing "sdpa" would trip transformers' SDPA checks)


def sinks_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    scaling: float,
    dropout: float = 0.0,
    s_aux: Optional[torch.Tensor] = None,
    hsd_prefix: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention with per-head sinks, equal to gpt-oss ``eager`` up to float rounding.

    ``query`` (b, h, q, d); ``key``/``value`` (b, kv, k, d); ``attention_mask`` a boolean
    (b, 1, q, k) mask (True = attend) from :func:`_sinks_mask`. Returns (b, q, h, d).
    ``hsd_prefix`` (a :class:`hsd.gptoss.slotcache.SlotCache`, passed as a model kwarg by the
    refill decoder): on full-attention layers every query also sees the shared prefix K/V it
    holds once, ``(1, kv, P, d)``, visible to all (the rows' positions all lie after it); on
    sliding layers in a decode step ``key``/``value`` are its whole stores, read from each row's
    window start for the mask's width.
    """
    sinks = module.sinks if s_aux is None else s_aux
    shared = hsd_prefix.prefix(module.layer_idx) if hsd_prefix is not None else None
    starts = hsd_prefix.window_starts(module.layer_idx) if hsd_prefix is not None else None
    if starts is not None:
        out = ATTENTION("window", _window_attention, query.is_cuda, query, key, value, attention_mask, sinks,
                        scaling, starts)
    elif shared is not None and query.shape[2] == 1:
        out = ATTENTION("shared", shared_prefix_attention, query.is_cuda, query, key, value, attention_mask, sinks,
                        scaling, shared[0], shared[1])
    elif shared is not None:  # a refill's admit: the prefix read once for all admitted rows (uncompiled)
        out = shared_prefix_attention(query, key, value, attention_mask, sinks, scaling, shared[0], shared[1])
    elif query.shape[2] == 1:
        out = ATTENTION("decode", _decode_attention, query.is_cuda, query, key, value, attention_mask, sinks, scaling)
    else:
        out = _prefill_attention(module, query, key, value, attention_mask, sinks, scaling, dropout)
    return out.transpose(1, 2).contiguous(), None


def _decode_attention(query, key, value, mask, sinks, scaling):
    b, h, _, d = query.shape
    kv = key.shape[1]
    q = query.view(b, kv, h // kv, d)  # one query token: heads grouped by their KV head
    scores = torch.matmul(q, key.transpose(2, 3)) * scaling  # (b, kv, group, k)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, :, 0, :][:, :, None, :], torch.finfo(scores.dtype).min)
    sink = sinks.to(scores.dtype).view(1, kv, h // kv, 1).expand(b, -1, -1, -1)
    logits = torch.cat([scores, sink], dim=-1)
    probs = torch.softmax(logits.float(), dim=-1)[..., :-1].to(value.dtype)
    out = torch.matmul(probs, value)  # (b, kv, group, d)
    return out.reshape(b, h, 1, d)


def _window_attention(query, key, value, mask, sinks, scaling, starts):
    """:func:`_decode_attention` over each row's ``mask.shape[-1]`` columns of its store from
    ``starts`` (rows,), gathered first (the hand-written kernel reads them in place)."""
    b, kv, _, d = key.shape
    width = mask.shape[-1]
    cols = starts.view(b, 1, 1, 1) + torch.arange(width, device=key.device).view(1, 1, width, 1)
    cols = cols.expand(b, kv, width, d)
    return _decode_attention(query, key.gather(2, cols), value.gather(2, cols), mask, sinks, scaling)


def _prefill_attention(module, query, key, value, mask, sinks, scaling, dropout):
    b, h, q_len, d = query.shape
    groups = h // key.shape[1]
    key = key.repeat_interleave(groups, dim=1) if groups > 1 else key
    value = value.repeat_interleave(groups, dim=1) if groups > 1 else value
    k_len = key.shape[2]
    pad = 8  # one sink dimension, padded so SDPA's fused kernels accept the head size
    q_ext = torch.zeros(b, h, q_len, d + pad, dtype=query.dtype, device=query.device)
    q_ext[..., :d] = query
    q_ext[..., d] = 1.0
    k_ext = torch.zeros(b, h, k_len + 1, d + pad, dtype=key.dtype, device=key.device)
    k_ext[:, :, :k_len, :d] = key
    k_ext[:, :, k_len, d] = (sinks.to(torch.float32) / scaling).to(key.dtype).view(1, h)
    v_ext = torch.cat([value, value.new_zeros(b, h, 1, d)], dim=2)
    if mask is None:  # only when transformers skipped the mask: plain causal, no padding
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
        mask = mask.view(1, 1, q_len, k_len)
    mask = torch.cat([mask.expand(b, 1, q_len, k_len), mask.new_ones(b, 1, q_len, 1)], dim=-1)
    return torch.nn.functional.scaled_dot_product_attention(
        q_ext, k_ext, v_ext, attn_mask=mask, dropout_p=dropout if module.training else 0.0, scale=scaling
    )


def _sinks_mask(*args: Any, **kwargs: Any) -> Optional[torch.Tensor]:
    """transformers' boolean SDPA mask, always materialised (the sink column is appended to it)."""
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


def register_attention() -> str:
    """Make ``attn_implementation=ATTN_NAME`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_NAME, sinks_attention_forward)
    AttentionMaskInterface.register(ATTN_NAME, _sinks_mask)
    return ATTN_NAME
