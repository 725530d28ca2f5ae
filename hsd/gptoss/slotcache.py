"""A KV cache of fixed slots, each at its own position, with one shared prompt prefix.

Why (issue 17): the rich prompt is ~1,780 tokens of which ~1,724 are the same for every sample,
and reasoning lengths vary ten-fold. :class:`~hsd.inference.refill.RefillDecoder` therefore
keeps ``rows`` slots that are refilled one by one as samples finish, each slot at its own
position, and computes the shared prefix once. This cache is what makes that possible:

* **Columns are absolute positions.** A slot holds its sample's tokens at columns equal to their
  positions (prefix ``[0, P)``, then the sample's tail, then its new tokens), so masks and RoPE
  come straight from positions and a refilled slot simply overwrites the previous sample's
  columns (stale columns lie after the new sample's position and are masked until rewritten).
* **Full-attention layers** keep the prefix's KV once, ``(1, kv, P, d)``, and per slot only
  columns ``[P, length)``. Attention reads the prefix through ``hsd_prefix`` (passed as a model
  kwarg down to :func:`hsd.gptoss.attention.sinks_attention_forward`): in decode one flash
  attention of batch 1 serves every row (the prefix is read once per step, not once per row); in
  a refill's prefill it is expanded for the few rows admitted.
* **Sliding-window layers** need only the last ``window`` columns: each slot keeps columns from
  ``P - window + 1`` on (the prefix's last ``window - 1`` columns copied into every slot once, when
  the prefix is set), and a decode step reads just the window, so these layers cost the same
  at 4,000 tokens as at 128. The window is read **in place**: a row's window is a contiguous run
  of its store, so a decode step hands attention the whole store and each row's first window
  column (:meth:`SlotCache.window_starts`), and hsd's decode kernel starts each row there. Copying the
  windows out first (a gather per layer and K/V) took ~7 ms of a 41 ms 512-row step on the H100
  (torch.profiler, BENCHMARKS.md, issue 29).

Writes and reads use index tensors held here (``pos``, the decode step's positions), so the
decode step can be captured as one CUDA graph and replayed after any number of refills.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch


@dataclass(frozen=True)
class SlotShape:
    """What a cache is built for; a new shape (or prefix length) means a new cache and graph."""

    rows: int
    length: int  # columns per slot, absolute positions [0, length)
    prefix: int  # P: tokens shared by every sample, held once for full-attention layers


def kv_dims(text: Any) -> tuple[int, int]:
    """(KV heads, head dim) of a text config."""
    return text.num_key_value_heads, getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads


def column_start(layer_type: str, prefix: int, window: int) -> int:
    """The first absolute column a layer stores per slot (full: after the shared prefix; sliding:
    the prefix's last ``window - 1`` columns too)."""
    if layer_type == "sliding_attention":
        return max(0, prefix - window + 1)
    return prefix


class SlotCache:
    """Per-layer KV storage for ``rows`` slots; see the module docstring for the layout.

    Implements the one method transformers' attention calls, ``update``. Which rows and
    positions a forward writes is set beforehand: :meth:`decode_mode` (every row, one token at
    ``pos``) or :meth:`admit_mode` (a few rows, their tails).
    """

    def __init__(self, config: Any, shape: SlotShape, dtype: torch.dtype, device: Any) -> None:
        text = config.get_text_config(decoder=True)
        self.shape = shape
        self.layer_types = list(text.layer_types)
        self.window = int(text.sliding_window or 0)
        kv, d = kv_dims(text)
        self.start = [self._start(t) for t in self.layer_types]  # first absolute column each layer stores
        self.keys = [torch.zeros(shape.rows, kv, shape.length - s, d, dtype=dtype, device=device) for s in self.start]
        self.values = [torch.zeros_like(k) for k in self.keys]
        self.prefix_kv: list[Optional[tuple[torch.Tensor, torch.Tensor]]] = [
            (torch.zeros(1, kv, shape.prefix, d, dtype=dtype, device=device),
             torch.zeros(1, kv, shape.prefix, d, dtype=dtype, device=device))
            if self._shares(t) else None for t in self.layer_types]
        self.pos = torch.zeros(shape.rows, 1, dtype=torch.long, device=device)  # decode: next column per row
        self.cols = torch.arange(self.window, device=device)  # offsets inside a sliding window
        self._mode: tuple[Any, Any, int] = ("decode", None, 0)
        self._window_starts: Optional[torch.Tensor] = None  # see masks
        self.n = shape.rows  # a decode step covers slots [0, n): fewer once the run drains (RefillDecoder)

    @staticmethod
    def bytes_per_slot(config: Any, length: int, prefix: int, dtype: Any) -> int:
        """KV bytes one slot of a cache of ``length`` columns and a ``prefix`` adds (sizing by memory)."""
        text = config.get_text_config(decoder=True)
        kv, d = kv_dims(text)
        window, item = int(text.sliding_window or 0), torch.empty((), dtype=dtype).element_size()
        return sum(2 * kv * d * (length - column_start(t, prefix, window)) * item for t in text.layer_types)

    def _shares(self, layer_type: str) -> bool:
        return self.shape.prefix > 0 and layer_type != "sliding_attention"

    def _start(self, layer_type: str) -> int:
        return column_start(layer_type, self.shape.prefix, self.window)

    # ---------------------------------------------------------------- prefix

    def set_prefix(self, dynamic_cache: Any) -> None:
        """Copy a batch-1 cache of the prefix (positions ``[0, P)``) in: once per run."""
        p = self.shape.prefix
        for i, layer in enumerate(dynamic_cache.layers):
            k, v = layer.keys[:, :, :p], layer.values[:, :, :p]
            if self.prefix_kv[i] is not None:
                self.prefix_kv[i][0].copy_(k)
                self.prefix_kv[i][1].copy_(v)
            else:  # sliding: the prefix's last columns, into every slot
                s = self.start[i]
                self.keys[i][:, :, : p - s] = k[:, :, s:]
                self.values[i][:, :, : p - s] = v[:, :, s:]

    # ---------------------------------------------------------------- modes

    def decode_mode(self) -> None:
        self._mode = ("decode", None, 0)
        self._window_starts = None  # set by masks(), which every decode forward calls first

    def admit_mode(self, rows: torch.Tensor, positions: torch.Tensor) -> None:
        """The next forward prefills ``rows`` (n,) at absolute ``positions`` (n, w)."""
        self._mode = ("admit", (rows, positions), int(positions.max()) + 1)

    def masks(self, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Boolean (rows, 1, q, k) masks matching what attention reads per layer type: in a decode
        step, a sliding layer reads ``k`` columns of each row's store from its :meth:`window_starts`."""
        mode, _, end = self._mode
        out = {}
        for t in set(self.layer_types):
            i = self.layer_types.index(t)
            if mode == "decode" and t == "sliding_attention":
                width = min(self.window, self.keys[i].shape[2])
                starts = (positions[:, -1] - (width - 1) - self.start[i]).clamp(0, self.keys[i].shape[2] - width)
                self._window_starts = starts  # (rows,): every sliding layer's stores have this shape
                cols = starts[:, None] + self.start[i] + self.cols[:width].view(1, -1)  # (rows, width) absolute
            else:
                cols = torch.arange(self.start[i], end if mode == "admit" else self.shape.length,
                                    device=positions.device).view(1, -1)
                cols = cols.expand(positions.shape[0], -1)
            m = cols[:, None, :] <= positions[:, :, None]  # (rows, q, k) causal on absolute columns
            if t == "sliding_attention":
                m = m & (cols[:, None, :] > positions[:, :, None] - self.window)
            out[t] = m[:, None]
        return out

    def window_starts(self, layer_idx: int) -> Optional[torch.Tensor]:
        """In a decode step on a sliding layer, each row's first window column in the store that
        :meth:`update` returned whole, (rows,); the window is the mask's width. None otherwise."""
        if self._mode[0] != "decode" or self.layer_types[layer_idx] != "sliding_attention":
            return None
        return self._window_starts

    # ---------------------------------------------------------------- transformers' hook

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        """Write this forward's K/V (b, kv, q, d) at its rows/positions; return what attention reads."""
        mode, sel, end = self._mode
        keys, values, start = self.keys[layer_idx], self.values[layer_idx], self.start[layer_idx]
        if mode == "decode":
            keys, values, pos = keys[: self.n], values[: self.n], self.pos[: self.n]
            rows = torch.arange(self.n, device=keys.device)
            col = (pos[:, 0] - start).clamp(min=0)
            keys[rows, :, col] = key[:, :, 0]
            values[rows, :, col] = value[:, :, 0]
            return keys, values  # a sliding layer's window is read in place (see window_starts())
        rows, positions = sel
        cols = positions - start
        keys[rows[:, None], :, cols] = key.transpose(1, 2)
        values[rows[:, None], :, cols] = value.transpose(1, 2)
        return keys[rows, :, : end - start], values[rows, :, : end - start]

    def move_rows(self, src: list[int], dst: list[int]) -> None:
        """Copy slots ``src`` (KV and position) into the free slots ``dst``."""
        s, d = (torch.tensor(x, device=self.pos.device) for x in (src, dst))
        for keys, values in zip(self.keys, self.values):
            keys[d] = keys[s]
            values[d] = values[s]
        self.pos[d] = self.pos[s]

    def prefix(self, layer_idx: int) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """The shared prefix K/V of a full-attention layer (None: sliding layer, or no prefix)."""
        return self.prefix_kv[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:  # transformers asks when position_ids are absent
        return 0
