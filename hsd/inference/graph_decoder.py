"""Static batches decoded with one static KV cache and the decode step replayed as a CUDA graph.

Why (measured on the lent H100, see BENCHMARKS.md): decode steps launch ~1,500 small kernels; at
batch 16 a step took ~80 ms where reading the weights takes ~13 ms. :class:`GraphDecoder` keeps
one static KV cache per batch shape (:func:`hsd.gptoss.static_cache.full_static_cache`) and
replays the decode step as a CUDA graph (captured in seconds; torch.compile's
``reduce-overhead`` mode was tried first: transformers' sliding-window static cache made it
re-trace at every token, and compiling the 24-layer model took minutes). Short batches are
padded to the same row count (:func:`pad_rows`) so one graph serves the whole run. The
attention it runs is hsd's (:mod:`hsd.gptoss.attention`); this module only drives the model.
"""

from __future__ import annotations

from typing import Any

import torch

from hsd.gptoss.static_cache import full_static_cache
from hsd.inference.label_scores import gather
from hsd.inference.sampling import Sampling, select_tokens

CACHE_ROUND = 128  # cache lengths are rounded up to this, so nearby lengths share one graph


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
        self.label_logits: Any = None  # (rows, steps, K) of the last generate call given ``record``

    def generate(self, input_ids: Any, attention_mask: Any, s: Sampling, record: Any = None) -> Any:
        """New token ids (rows, <= max_new_tokens), pad after a row's stop token. ``record``: token
        ids whose logits are kept per step in :attr:`label_logits` (hsd.inference.label_scores)."""
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
            out, kept, done = [], [], torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
            stops = torch.tensor(s.stop_ids, device=input_ids.device)
            for step in range(s.max_new_tokens):
                if record is not None:
                    kept.append(gather(logits, record))
                tok = _select(logits.float(), s, step, stops)
                tok = torch.where(done, torch.full_like(tok, s.pad_id), tok)
                out.append(tok)
                done |= torch.isin(tok, stops)
                if step + 1 == s.max_new_tokens or bool(done.all()):
                    break
                self.tok.copy_(tok.view(rows, 1))
                logits = self._step(first=step == 0)
            self.label_logits = torch.stack(kept, dim=1) if kept else None
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
