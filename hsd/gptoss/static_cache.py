"""A static KV cache whose every layer (sliding-window ones included) a CUDA graph can replay.

transformers' ``StaticSlidingWindowLayer`` tracks its fill level in a Python int, which a
captured or compiled decode step cannot follow (dynamo re-traces at every token). Layers with
only tensor state can be replayed; the sliding window is then applied by the attention mask
(absolute positions), which is exact. The graph decoder (hsd.inference.graph_decoder) keeps one
such cache per batch shape.
"""

from __future__ import annotations

from typing import Any, Optional


def full_static_cache(config: Any, cache_len: int) -> Any:
    """A static cache of ``cache_len`` columns in every layer, the sliding-window layers too.

    Costs the sliding layers' KV memory at full length (batch 64 x 1,664 tokens: +2.6 GB on
    gpt-oss-20b).
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
