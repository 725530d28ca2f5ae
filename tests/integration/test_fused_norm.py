"""The fused RMSNorm hsd trains with (``hsd.gptoss.norm``) equals transformers' GptOssRMSNorm.

Outputs and gradients (input and weight) of the whole tiny model, with and without the fused
norms, in fp32 on the CPU; and the swap is per model instance, not the class.
"""

from __future__ import annotations

import pytest
import torch

from hsd.gptoss.norm import fuse_rms_norms

pytestmark = pytest.mark.integration


def _model(make):
    model = make()
    with torch.no_grad():  # norm weights away from 1, so a wrong weight path shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def _run(model):
    ids = torch.randint(0, 600, (3, 40), generator=torch.Generator().manual_seed(1))
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fused_rms_norm_equals_transformers(tiny_architecture):
    ref_logits, ref = _run(_model(tiny_architecture))
    fused_model = _model(tiny_architecture)
    assert fuse_rms_norms(fused_model) == 2 * 2 + 1  # two per layer and the final one
    logits, grads = _run(fused_model)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert any("norm" in n for n in grads)
    for name in ref:
        torch.testing.assert_close(grads[name], ref[name], rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    untouched = _model(tiny_architecture)  # the class keeps transformers' forward
    assert all("forward" not in vars(m) for m in untouched.modules())
