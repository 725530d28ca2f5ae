"""gpt-oss's RMSNorm through torch's fused ``rms_norm`` kernel (training; inference on CUDA).

transformers' ``GptOssRMSNorm`` upcasts to fp32 and runs pow, mean, rsqrt and two multiplies as
separate kernels, each reading and writing the (tokens, 2,880) activations — and autograd keeps
their intermediates and runs a backward kernel for each. A training step passes through the 49
norms of gpt-oss-20b three times (forward, recompute, backward); in the H100 profile of a step,
dtype copies and element-wise multiplies, many of them these norms', were ~20% of the GPU time.
``torch.rms_norm`` computes the same thing in one kernel each way (fp32 inside, the weight
multiplied before the one rounding, as in transformers), with no compile step: ~6% of the step
time in the probe of BENCHMARKS.md.
"""

from __future__ import annotations

import types
from typing import Any


def _fused_forward(self: Any, hidden_states: Any) -> Any:
    import torch

    if hidden_states.dtype != self.weight.dtype:  # mixed dtypes: keep transformers' exact promotion
        return type(self).forward(self, hidden_states)
    return torch.rms_norm(hidden_states, (hidden_states.shape[-1],), self.weight, self.variance_epsilon)


def fuse_rms_norms(model: Any) -> int:
    """Route every ``GptOssRMSNorm`` of ``model`` through :func:`torch.rms_norm`; returns how many.

    Per instance (the class is untouched): other models in the process keep transformers' code.
    """
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRMSNorm

    norms = [m for m in model.modules() if isinstance(m, GptOssRMSNorm)]
    for module in norms:
        module.forward = types.MethodType(_fused_forward, module)
    return len(norms)
