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
  weights takes ~13 ms. :class:`GraphDecoder` keeps one static KV cache per batch shape and
  replays the decode step as a CUDA graph (captured in seconds; torch.compile's
  ``reduce-overhead`` mode was tried first: transformers' sliding-window static cache made it
  re-trace at every token, and compiling the 24-layer model took minutes). Short batches are
  padded to the same row count (:func:`pad_rows`) so one graph serves the whole run.
"""

from __future__ import annotations

import dataclasses
import logging
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
    hsd_prefix: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention with per-head sinks, equal to gpt-oss ``eager`` up to float rounding.

    ``query`` (b, h, q, d); ``key``/``value`` (b, kv, k, d); ``attention_mask`` a boolean
    (b, 1, q, k) mask (True = attend) from :func:`_sinks_mask`. Returns (b, q, h, d).
    ``hsd_prefix`` (a :class:`hsd.inference.slotcache.SlotCache`, passed as a model kwarg by the
    refill decoder): on full-attention layers every query also sees the shared prefix K/V it
    holds once, ``(1, kv, P, d)``, visible to all (the rows' positions all lie after it).
    """
    sinks = module.sinks if s_aux is None else s_aux
    shared = hsd_prefix.prefix(module.layer_idx) if hsd_prefix is not None else None
    if shared is not None and query.shape[2] == 1:
        out = _fused("shared", _decode_shared_prefix, query.is_cuda, query, key, value, attention_mask, sinks,
                     scaling, shared[0], shared[1])
    elif shared is not None:  # a refill's prefill: the few admitted rows see the prefix, expanded (no copy kept)
        b, q_len = query.shape[0], query.shape[2]
        key = torch.cat([shared[0].expand(b, -1, -1, -1), key], dim=2)
        value = torch.cat([shared[1].expand(b, -1, -1, -1), value], dim=2)
        seen = attention_mask.new_ones(b, 1, q_len, shared[0].shape[2])
        out = _prefill_attention(module, query, key, value, torch.cat([seen, attention_mask], dim=-1),
                                 sinks, scaling, dropout)
    elif query.shape[2] == 1:
        out = _fused("decode", _decode_attention, query.is_cuda, query, key, value, attention_mask, sinks, scaling)
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


COMPILE_ENV = "HSD_COMPILE_ATTENTION"  # "0": decode attention runs as separate eager kernels
_FUSED: dict[str, Any] = {}


def _fused(name: str, fn: Any, cuda: bool, *args: Any) -> Any:
    """``fn(*args)``, compiled once per process (dynamic shapes) on CUDA so its element-wise
    passes over the (rows, heads, keys) scores fuse into a few kernels; eager on CPU (tests), when
    ``HSD_COMPILE_ATTENTION=0``, or after a compiler failure (warned once). Compiled while the
    decode step is warmed up, before its CUDA graph is captured, so the graph replays the fused
    kernels."""
    import os

    if not cuda or os.environ.get(COMPILE_ENV, "1") == "0":
        return fn(*args)
    if name not in _FUSED:
        _FUSED[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    from torch._dynamo.exc import TorchDynamoException

    try:
        return _FUSED[name](*args)
    except TorchDynamoException as exc:  # a compiler problem must not stop an evaluation
        _FUSED[name] = fn
        logging.getLogger(__name__).warning("decode attention: torch.compile failed (%s); running eager", exc)
        return fn(*args)


def _decode_shared_prefix(query, key, value, mask, sinks, scaling, prefix_k, prefix_v):
    """Decode attention over a shared prefix (read once for all rows) + each row's own keys.

    The prefix part is one attention of batch 1 (a head per KV head, ``b * group`` queries, no
    mask) run by the fused flash kernel, which also returns its log-sum-exp: the (kv, b*group, P)
    score matrix is never written out (as separate passes it was ~30% of a 512-row decode step,
    tools/refill_probe.py). The own keys' softmax, the sink and the prefix's log-sum-exp are
    combined as one softmax (common max, summed normalisers): equal to attention over the
    concatenation.
    """
    b, h, _, d = query.shape
    kv, group = key.shape[1], h // key.shape[1]
    q = query.view(b, kv, group, d)
    qp = q.transpose(0, 1).reshape(1, kv, b * group, d)
    out_pre, lse_pre = _attention_with_lse(qp, prefix_k, prefix_v, scaling)  # (1, kv, b*group, d), (1, kv, b*group)
    out_pre = out_pre[0].view(kv, b, group, d).transpose(0, 1)  # (b, kv, group, d)
    lse_pre = lse_pre[0].view(kv, b, group).transpose(0, 1).unsqueeze(-1).float()  # (b, kv, group, 1)
    own = torch.matmul(q, key.transpose(2, 3)).float() * scaling  # (b, kv, group, k)
    if mask is not None:
        own = own.masked_fill(~mask[:, :, 0, :][:, :, None, :], float("-inf"))
    sink = sinks.float().view(1, kv, group, 1)
    top = torch.maximum(torch.maximum(own.amax(-1, keepdim=True), lse_pre), sink)
    e_own, w_pre = torch.exp(own - top), torch.exp(lse_pre - top)
    norm = e_own.sum(-1, keepdim=True) + w_pre + torch.exp(sink - top)
    out = torch.matmul((e_own / norm).to(value.dtype), value)  # (b, kv, group, d)
    out = out + (out_pre.float() * (w_pre / norm)).to(value.dtype)
    return out.reshape(b, h, 1, d)


def _attention_with_lse(q, k, v, scaling):
    """Unmasked attention (b, h, L, d) and its log-sum-exp (b, h, L), from torch's fused flash
    kernel (the one ``scaled_dot_product_attention`` dispatches to; its public API drops the
    log-sum-exp the merge with the own keys needs). CUDA's flash kernel takes half precision
    only: a float32 model on a GPU gets :func:`_math_attention_with_lse`."""
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256:
        res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scaling)
        return res[0], res[1]
    if q.is_cuda:
        return _math_attention_with_lse(q, k, v, scaling)
    res = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=None,
                                                                     scale=scaling)
    return res[0], res[1]


def _math_attention_with_lse(q, k, v, scaling):
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scaling
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul(torch.exp(scores - lse.unsqueeze(-1)).to(v.dtype), v), lse


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


def resolve_experts_implementation(name: Optional[str]) -> str:
    """None/``auto`` -> hsd's fused grouped_mm experts (registered here); other names pass through."""
    if name in (None, "auto"):
        from hsd.inference.experts import register_experts

        return register_experts()
    return name


# --------------------------------------------------------------------------------------
# Static cache + CUDA-graph decode
# --------------------------------------------------------------------------------------


CACHE_ROUND = 128  # cache lengths are rounded up to this, so nearby lengths share one graph


def full_static_cache(config: Any, cache_len: int) -> Any:
    """A static cache whose sliding-window layers keep the full length too.

    transformers' ``StaticSlidingWindowLayer`` tracks its fill level in a Python int, which a
    captured or compiled decode step cannot follow (dynamo re-traces at every token). Layers
    with only tensor state can be replayed; the sliding window is then applied by the attention
    mask (absolute positions), which is exact. Costs the sliding layers' KV memory at full
    length (batch 64 x 1,664 tokens: +2.6 GB on gpt-oss-20b).
    """
    from transformers.cache_utils import StaticLayer

    n = config.get_text_config(decoder=True).num_hidden_layers
    return _FullStaticCache([StaticLayer(max_cache_len=cache_len) for _ in range(n)])


def _full_static_cache_class() -> type:
    from transformers import StaticCache
    from transformers.cache_utils import Cache

    class FullStaticCache(StaticCache):  # a StaticCache (compileable) built from given layers
        def __init__(self, layers: list[Any]) -> None:
            Cache.__init__(self, layers=layers)

    return FullStaticCache


class _Lazy:
    """Defer importing transformers until a cache is built (``hsd --help`` imports no torch)."""

    _cls: Optional[type] = None

    def __call__(self, layers: list[Any]) -> Any:
        if _Lazy._cls is None:
            _Lazy._cls = _full_static_cache_class()
        return _Lazy._cls(layers)


_FullStaticCache = _Lazy()


@dataclasses.dataclass
class Sampling:
    """Token selection for one generate call (greedy when temperature == 0)."""

    max_new_tokens: int
    min_new_tokens: int
    temperature: float
    top_p: float
    stop_ids: tuple[int, ...]
    pad_id: int
    reserve_new: int = 0  # size caches for at least this many new tokens (one shape, one graph per run)


class GraphDecoder:
    """Decoding with a static KV cache and the decode step replayed as one CUDA graph.

    Prefill is a plain forward pass (``logits_to_keep=1``). The first decode step of a new
    batch shape runs eagerly (warming up kernels) and the second is captured; every later
    step, and every later batch of the same shape, replays the graph: one launch per token
    instead of ~1,500. Inputs live in fixed buffers (token, position, 2-D mask) that the graph
    reads; the cache's fill level is a device tensor the graph advances itself. On CPU (tests)
    the same steps run eagerly. Token selection matches transformers' generate: greedy argmax,
    or temperature + top-p sampling; ``<|return|>``/``<|call|>`` stop a row, later positions
    get the pad token; min_new_tokens masks the stop tokens.
    """

    def __init__(self, model: Any, cuda_graphs: bool = True) -> None:
        self.model = model
        self.use_graph = cuda_graphs and model.device.type == "cuda"
        self.shape: tuple[int, int] = (0, 0)  # (rows, cache_len) of the cache and graph
        self.cache: Any = None
        self.graph: Any = None

    def generate(self, input_ids: Any, attention_mask: Any, s: Sampling) -> Any:
        """New token ids (rows, <= max_new_tokens), pad after a row's stop token."""
        import torch

        rows, plen = input_ids.shape
        with torch.inference_mode():
            self._prepare(rows, plen + max(s.max_new_tokens, s.reserve_new))
            self.mask[:] = 1
            self.mask[:, :plen] = attention_mask
            pos = attention_mask.long().cumsum(-1) - 1  # as generate: positions count real tokens only
            pos.masked_fill_(attention_mask == 0, 1)
            logits = self.model(input_ids=input_ids, attention_mask=self.mask[:, :plen], position_ids=pos,
                                past_key_values=self.cache, use_cache=True, logits_to_keep=1).logits[:, -1]
            self.pos.copy_(pos[:, -1:] + 1)
            out, done = [], torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
            stops = torch.tensor(s.stop_ids, device=input_ids.device)
            for step in range(s.max_new_tokens):
                tok = _select(logits.float(), s, step, stops)
                tok = torch.where(done, torch.full_like(tok, s.pad_id), tok)
                out.append(tok)
                done |= torch.isin(tok, stops)
                if step + 1 == s.max_new_tokens or bool(done.all()):
                    break
                self.tok.copy_(tok.view(rows, 1))
                logits = self._step(first=step == 0)
            return torch.stack(out, dim=1)

    @property
    def cache_len(self) -> int:
        return self.shape[1]

    def _prepare(self, rows: int, need: int) -> None:
        """(Re)build cache, buffers and graph for a new shape; else reset the cache in place."""
        import torch

        if self.cache is not None and rows == self.shape[0] and need <= self.shape[1]:
            self.cache.reset()
            return
        self.cache = self.graph = None  # free the old ones first
        length = -(-need // CACHE_ROUND) * CACHE_ROUND
        self.shape = (rows, length)
        device = self.model.device
        self.cache = full_static_cache(self.model.config, length)
        self.tok = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.mask = torch.ones(rows, length, dtype=torch.long, device=device)

    def _forward_step(self) -> Any:
        out = self.model(input_ids=self.tok, attention_mask=self.mask, position_ids=self.pos,
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        self.pos.add_(1)
        return out

    def _step(self, first: bool) -> Any:
        import torch

        if not self.use_graph:
            return self._forward_step()
        if self.graph is None:
            if first:  # warm-up on a side stream (lazy kernel/handle set-up stays out of the graph)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    logits = self._forward_step()
                torch.cuda.current_stream().wait_stream(side)
                return logits
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.graph_logits = self._forward_step()
        self.graph.replay()
        return self.graph_logits


def _select(logits: Any, s: Sampling, step: int, stops: Any) -> Any:
    """Next token per row: min_new_tokens, then greedy or temperature + top-p."""
    if step < s.min_new_tokens:
        logits = logits.index_fill(-1, stops, float("-inf"))
    return select_tokens(logits, s)


def select_tokens(logits: Any, s: Sampling, blocked: Any = None, stops: Any = None) -> Any:
    """Greedy argmax or temperature + top-p sampling, as transformers' generate selects.

    ``blocked`` (rows,) bool: rows whose stop tokens are masked (min_new_tokens not reached yet).
    """
    import torch

    if blocked is not None:
        logits = torch.where(blocked[:, None], logits.index_fill(-1, stops, float("-inf")), logits)
    if s.temperature == 0:
        return logits.argmax(-1)
    logits = logits / s.temperature
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs > s.top_p  # keep the smallest prefix whose mass reaches top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    choice = torch.multinomial(sorted_logits.softmax(-1), 1)
    return order.gather(-1, choice).squeeze(-1)


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
