"""The fast generate path: sink-aware SDPA attention, a reusable static KV cache, CUDA graphs.

Why each piece (measured on the lent H100, see BENCHMARKS.md):

* gpt-oss has per-head attention *sinks*, so transformers offers no SDPA for it and its eager
  attention materialises every ``(batch, 64 heads, q, k)`` score matrix several times over and
  copies the grouped K/V eight-fold. :func:`sinks_attention_forward` is exact and avoids both:
  - prefill (q > 1): the sink becomes one extra key. Queries get a constant 1 in an extra
    dimension, the sink key holds ``sink / scale`` there (zero elsewhere) and a zero value, so
    ``q.k_sink * scale == sink`` for every query and SDPA's softmax includes the sink exactly as
    ``eager`` does. SDPA then runs its memory-efficient kernel (no score matrix in memory).
  - decode (q == 1): queries are grouped by KV head, ``(b, kv, group, d) @ (b, kv, d, k)``, so
    the cache is read once, never expanded.
  Registered under :data:`ATTN_NAME` with transformers' ``AttentionInterface`` (and a mask
  function that always materialises a boolean mask, which the sink column needs).
* Decode steps launch ~1,500 small kernels; at batch 16 a step took ~80 ms where reading the
  weights takes ~13 ms. A *static* cache (fixed shapes) lets transformers compile the decode
  step with ``mode="reduce-overhead"`` (CUDA graphs). :class:`StaticDecoder` builds the cache
  once per run and reuses it for every batch; a short last batch is padded to the same size,
  so the compiled graph is recorded once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch

ATTN_NAME = "hsd_sinks"  # (a name containing "sdpa" would trip transformers' SDPA checks)
# ``auto`` in model.attn_implementation resolves to this (see resolve_attn_implementation).
FAST_ATTENTION = {"auto": ATTN_NAME}


def sinks_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    scaling: float,
    dropout: float = 0.0,
    s_aux: Optional[torch.Tensor] = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention with per-head sinks, equal to gpt-oss ``eager`` up to float rounding.

    ``query`` (b, h, q, d); ``key``/``value`` (b, kv, k, d); ``attention_mask`` a boolean
    (b, 1, q, k) mask (True = attend) from :func:`_sinks_mask`. Returns (b, q, h, d).
    """
    sinks = module.sinks if s_aux is None else s_aux
    if query.shape[2] == 1:
        out = _decode_attention(query, key, value, attention_mask, sinks, scaling)
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


def resolve_attn_implementation(name: str) -> str:
    """``auto`` -> the sink-aware SDPA kernel (registered here); other names pass through."""
    if FAST_ATTENTION.get(name) == ATTN_NAME or name == ATTN_NAME:
        return register_attention()
    return name


# --------------------------------------------------------------------------------------
# Static cache + compiled decode
# --------------------------------------------------------------------------------------


CACHE_ROUND = 128  # cache lengths are rounded up to this, so nearby lengths share one graph


@dataclasses.dataclass
class StaticDecoder:
    """One static KV cache reused by every batch of a run, and with it one compiled decode graph.

    The cache is sized by the first batch it sees: validation sends the longest prompts first,
    so later batches fit. A batch with more rows or a longer prompt + output than the cache
    gets a new cache (and, compiled, a new graph: about a minute on gpt-oss-20b). Callers pad
    short batches to ``rows`` (:func:`pad_rows`) so the shape never changes.
    ``compile`` turns on transformers' compiled decode step (CUDA graphs); transformers does so
    on CUDA only, so on CPU the same static cache runs uncompiled (tests compare it with the
    plain path).
    """

    model: Any
    compile: bool = True
    rows: int = 0
    cache_len: int = 0
    _cache: Any = None

    def generate_kwargs(self, rows: int, prompt_len: int, max_new_tokens: int) -> dict[str, Any]:
        """Extra ``model.generate`` kwargs for a ``rows`` x ``prompt_len`` batch: cache + compile switch."""
        need = prompt_len + max_new_tokens
        if self._cache is None or rows != self.rows or need > self.cache_len:
            self._cache = None  # free the old cache before allocating the new one
            self.rows, self.cache_len = rows, -(-need // CACHE_ROUND) * CACHE_ROUND
            self._cache = full_static_cache(self.model.config, self.cache_len)
        else:
            with torch.inference_mode():  # its tensors were made under generate's inference mode
                self._cache.reset()
        compiled = self.compile and self.model.device.type == "cuda"  # transformers compiles on CUDA only
        kwargs: dict[str, Any] = {"past_key_values": self._cache, "disable_compile": not compiled}
        if compiled:
            from transformers import CompileConfig

            # dynamic=False: one graph for the run's one shape; reduce-overhead = CUDA graphs.
            kwargs["compile_config"] = CompileConfig(fullgraph=False, dynamic=False, mode="reduce-overhead")
        return kwargs


def full_static_cache(config: Any, cache_len: int) -> Any:
    """A static cache whose sliding-window layers keep the full length too.

    transformers' ``StaticSlidingWindowLayer`` tracks its fill level in a Python int, so a
    compiled decode step is re-traced at every token (dynamo guards on the int) and falls back
    to eager after 8 recompiles. Full-length layers have only tensor state; the sliding window
    is then applied by the attention mask (absolute positions), which is exact. Costs the
    sliding layers' KV memory at full length (batch 64 x 1,280 tokens: +2 GB on gpt-oss-20b).
    """
    from transformers import StaticCache
    from transformers.cache_utils import Cache, StaticLayer

    class _FullStaticCache(StaticCache):
        def __init__(self) -> None:
            n = config.get_text_config(decoder=True).num_hidden_layers
            Cache.__init__(self, layers=[StaticLayer(max_cache_len=cache_len) for _ in range(n)])

    return _FullStaticCache()


def pad_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pad a (left-padded) batch to ``rows`` by repeating its first row; returns the real row count.

    Repeating a real row (not an all-padding row) keeps every row's attention well defined; the
    extra rows' outputs are dropped by the caller.
    """
    n = input_ids.shape[0]
    if n >= rows:
        return input_ids, attention_mask, n
    extra = rows - n
    return (torch.cat([input_ids, input_ids[:1].expand(extra, -1)]),
            torch.cat([attention_mask, attention_mask[:1].expand(extra, -1)]), n)
