"""The full-size gpt-oss-20b architecture with random bf16 weights, built directly on the GPU.

Benchmarks (``benchmarks/bench.py``, the GPU training run) need the real model's shapes and cost, not its
knowledge; no machine here can download the 13 GB checkpoint, and writing a 39 GiB random
checkpoint to disk first would take minutes. So ``model.name_or_path: random:gpt-oss-20b``
builds ``GptOssForCausalLM`` in place on the device (well under a second) and pairs it with
gpt-oss's real tokenizer (:mod:`hsd.models.o200k`, one entry per row of the 201,088-row
embedding), so prompts have the real model's token lengths. Outputs are meaningless; speed and
memory are the real model's.

Note: ``transformers.GptOssConfig()`` defaults are the 120b model (36 layers, 128 experts);
the 20b shape is set explicitly below (values from the released ``config.json``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from hsd.errors import ModelError
from hsd.models import o200k

PREFIX = "random:"
# name -> GptOssConfig overrides; the rest (yarn RoPE, 131k positions, eps) are the defaults.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "gpt-oss-20b": {
        "hidden_size": 2880,
        "intermediate_size": 2880,
        "num_hidden_layers": 24,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "num_local_experts": 32,
        "num_experts_per_tok": 4,
        "vocab_size": 201088,
        "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * 12,
        "tie_word_embeddings": False,
    },
    # ~117B parameters, ~234 GB in bf16: no single GPU holds it; built sharded (build_random_sharded)
    # or partitioned (ZeRO-3), never whole on one device.
    # The GptOssConfig defaults are this model; spelt out so a transformers default change cannot move it.
    "gpt-oss-120b": {
        "hidden_size": 2880,
        "intermediate_size": 2880,
        "num_hidden_layers": 36,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "num_local_experts": 128,
        "num_experts_per_tok": 4,
        "vocab_size": 201088,
        "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * 18,
        "tie_word_embeddings": False,
    },
    # The tiny test model's shape (hsd.models.tiny), for tests of the random: path on CPU.
    "gpt-oss-tiny": {
        "hidden_size": 64,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "vocab_size": 201088,  # gpt-oss's o200k_harmony embedding rows (hsd.models.o200k)
        "sliding_window": 32,
        "layer_types": ["sliding_attention", "full_attention"],
        "tie_word_embeddings": False,
    },
}


def is_random_spec(name_or_path: str) -> bool:
    """True for ``random:<architecture>`` model names."""
    return name_or_path.startswith(PREFIX)


def architecture_config(name: str, tokenizer: Any = None) -> Any:
    """The ``GptOssConfig`` of a named architecture; special token ids from ``tokenizer``, or
    gpt-oss's own (o200k_harmony's) without one."""
    from transformers import GptOssConfig

    if name not in ARCHITECTURES:
        raise ModelError(
            f"unknown random architecture '{PREFIX}{name}'; known: {', '.join(PREFIX + a for a in ARCHITECTURES)}"
        )
    kwargs = dict(ARCHITECTURES[name])
    kwargs.update(_token_ids(tokenizer.convert_tokens_to_ids if tokenizer is not None else o200k.SPECIAL_IDS.get))
    return GptOssConfig(**kwargs)


def _token_ids(ids: Callable[[str], Any]) -> dict[str, Any]:
    return {"bos_token_id": ids(o200k.BOS), "pad_token_id": ids(o200k.PAD),
            "eos_token_id": [ids(o200k.EOS), ids(o200k.CALL)]}


def build_random(
    name: str = "gpt-oss-20b",
    tokenizer: Any = None,
    device: str = "cuda",
    dtype: str = "bfloat16",
    attn_implementation: str = "eager",
    experts_implementation: str | None = None,
    seed: int = 0,
) -> Any:
    """Instantiate the architecture with random weights directly on ``device`` in ``dtype``."""
    import torch
    from transformers import GptOssForCausalLM

    config = architecture_config(name, tokenizer)
    torch_dtype = getattr(torch, dtype)
    previous = torch.get_default_dtype()
    torch.manual_seed(seed)
    try:
        torch.set_default_dtype(torch_dtype)
        with torch.device(device):
            model = GptOssForCausalLM._from_config(
                config, attn_implementation=attn_implementation, experts_implementation=experts_implementation
            )
    finally:
        torch.set_default_dtype(previous)
    return _as_served(model, config, name)


def _as_served(model: Any, config: Any, name: str) -> Any:
    """Greedy, stopping at the harmony stop tokens, named by its spec, in eval mode — as the
    released checkpoint's generation_config would have it."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id, do_sample=False,
    )
    model.name_or_path = PREFIX + name
    return model.eval()


def build_random_sharded(name: str, distributed_config: Any, dtype: Any, attn_implementation: str,
                         experts_implementation: str, seed: int = 0) -> Any:
    """The architecture with random weights, each rank materialising only its own shards.

    transformers' own parallel loading with an empty state dict: the model is laid out on the
    meta device, the parallel plans (``distributed_config``) turn the sharded parameters into
    DTensors, and only this rank's slices are allocated and initialised. Every rank seeds the
    same generator, so the replicated parameters (attention, router, norms) are equal on all
    ranks — they must be, since every rank computes them on the same tokens.
    """
    import torch
    from transformers import GptOssForCausalLM
    from transformers.utils import logging as hf_logging

    config = architecture_config(name)  # gpt-oss's special token ids
    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report would list every parameter as "missing"
    try:
        model = GptOssForCausalLM.from_pretrained(
            None, config=config, state_dict={}, distributed_config=distributed_config, dtype=dtype,
            attn_implementation=attn_implementation, experts_implementation=experts_implementation)
    finally:
        hf_logging.set_verbosity(verbosity)
    return _as_served(model, config, name)


@functools.lru_cache(maxsize=1)
def harmony_tokenizer() -> Any:
    """gpt-oss's real tokenizer (o200k_harmony, 201,088 entries, built offline once; ~2 s to load)."""
    return o200k.load_tokenizer()


def random_from_pretrained(what: str, name_or_path: str, **kwargs: Any) -> Any:
    """What ``from_pretrained`` would return for ``random:<arch>``: the tokenizer or the model.

    Takes the loader's keyword arguments (``dtype``, ``attn_implementation``,
    ``experts_implementation``, ``device_map``). Without a device map (DeepSpeed training) the
    model is built on the GPU when there is one. Under ZeRO-3 (an ``HfDeepSpeedConfig`` alive, as
    accelerate's plugin keeps one during training) ``_from_config`` builds it inside
    ``deepspeed.zero.Init``, the path ``from_pretrained`` takes for a real checkpoint: each module's
    weights are split across the ranks as soon as it is built, so gpt-oss-120b (234 GB) is never
    whole on one GPU (tests/integration/test_train.py checks each of 2 ranks holds half).
    """
    import torch

    if what == "tokenizer":  # a new one per call (callers set padding_side); ~1 s, not ~2.5 s for a deep copy
        return o200k.load_tokenizer()
    device = (kwargs.get("device_map") or {}).get("", "cuda" if torch.cuda.is_available() else "cpu")
    dtype = kwargs.get("dtype") or torch.bfloat16
    return build_random(name_or_path[len(PREFIX):], None, device=str(device),  # gpt-oss's token ids: no tokenizer
                        dtype=str(dtype).replace("torch.", ""),
                        attn_implementation=kwargs.get("attn_implementation", "eager"),
                        experts_implementation=kwargs.get("experts_implementation"))
