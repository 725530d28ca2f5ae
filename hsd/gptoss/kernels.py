"""hsd's names for gpt-oss kernels -> what transformers' ``from_pretrained`` is given.

``model.attn_implementation: auto`` means hsd's sink-aware attention, ``model.experts_implementation``
unset means hsd's fused experts; both are registered with transformers on first use, and the
``model.compile_*`` switch of each is applied here, so every model built through
:func:`hsd.models.loader.from_pretrained` (validation, training, merge) gets the same kernels.
Other names (``eager``, ``grouped_mm``, ...) pass through to transformers unchanged.
"""

from __future__ import annotations

from typing import Optional, Union

from hsd.gptoss.fusion import ATTENTION, EXPERTS


def resolve_attn_implementation(name: str, compile: bool = True) -> str:
    """``auto`` -> the sink-aware SDPA kernel (registered here; its decode passes compiled unless
    ``compile`` is false, ``model.compile_attention``); other names pass through."""
    from hsd.gptoss.attention import ATTN_NAME, register_attention

    if name not in ("auto", ATTN_NAME):
        return name
    ATTENTION.enabled = compile
    return register_attention()


def resolve_experts_implementation(name: Optional[str], compile: bool = True) -> str:
    """None/``auto`` -> hsd's fused grouped_mm experts (registered here; their element-wise stages
    compiled unless ``compile`` is false, ``model.compile_experts``); other names pass through."""
    from hsd.gptoss.experts import EXPERTS_NAME, register_experts

    if name not in (None, "auto", EXPERTS_NAME):
        return name
    EXPERTS.enabled = compile
    return register_experts()


def compile_flag(setting: Union[bool, str], training: bool) -> bool:
    """``model.compile_attention`` / ``model.compile_experts`` for a model built for training or
    for inference: ``auto`` compiles for training only. Why: compiling (even with its caches warm)
    cost ~14 s of every ``hsd validate`` on one H100 and saved ~3 ms per 512-row decode step, 0.8 s
    of a 1,009-sample validation (the whole job ran 36.3 s compiled, 31.2 s not: BENCHMARKS.md,
    issue 29); a training step repeats for minutes, where the fused kernels pay back."""
    return training if setting == "auto" else bool(setting)
