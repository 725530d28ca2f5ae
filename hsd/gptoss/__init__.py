"""gpt-oss model code hsd adds to transformers' GptOss: kernels and KV caches, no decoding loops.

- :mod:`~hsd.gptoss.attention` — sink-aware SDPA attention (``hsd_sinks``), prefill and decode;
- :mod:`~hsd.gptoss.prefix_attention` — decode attention over a prompt prefix shared by all rows;
- :mod:`~hsd.gptoss.experts` — MoE experts with fused element-wise stages (``hsd_grouped``);
- :mod:`~hsd.gptoss.fusion` — the compile-once-fall-back-to-eager rule both kernel families use;
- :mod:`~hsd.gptoss.norm` — RMSNorm through torch's fused kernel (training);
- :mod:`~hsd.gptoss.kernels` — ``model.*`` kernel names and compile switches -> transformers;
- :mod:`~hsd.gptoss.static_cache`, :mod:`~hsd.gptoss.slotcache` — the KV layouts the decoders fill.

What drives the model (batches, refill, CUDA-graph decode loops, token selection) lives in
:mod:`hsd.inference`, which imports this package; this package imports neither it nor
:mod:`hsd.models`. Importing it imports no torch (the submodules do).
"""
