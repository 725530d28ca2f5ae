"""Token selection as transformers' ``generate`` does it, for hsd's own decode loops.

Greedy argmax, or temperature + top-p sampling; rows that have not reached ``min_new_tokens``
cannot pick a stop token. Shared by the static-batch loop (hsd.inference.graph_decoder) and the
refill loop (hsd.inference.refill), so the two cannot choose differently.
"""

from __future__ import annotations

import dataclasses
from typing import Any


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
