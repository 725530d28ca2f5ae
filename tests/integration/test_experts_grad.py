"""hsd's experts (``hsd_grouped``, the training default) give transformers' gradients.

Training runs the same fused experts path as inference (hsd.gptoss.experts); a wrong
backward would train silently wrong. Every parameter's gradient (experts, their biases, the
router, attention, embeddings) is compared with transformers' ``eager`` experts, in fp32 on
the CPU, where hsd's element-wise stages run uncompiled with the same arithmetic.
"""

from __future__ import annotations

import pytest
import torch

from hsd.gptoss.kernels import resolve_experts_implementation

pytestmark = pytest.mark.integration


def _grads(make, experts: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model = make(experts)
    with torch.no_grad():  # non-zero biases and spread-out routing: every term of the backward matters
        for name, p in model.named_parameters():
            if name.endswith("gate_up_proj_bias"):
                p.normal_(0, 6.0)  # a share of the pre-activations beyond the gate's clamp limit (7)
            elif name.endswith(("_bias", "router.bias")):
                p.normal_(0, 0.5)
    ids = torch.randint(0, 600, (3, 40), generator=torch.Generator().manual_seed(1))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_hsd_experts_gradients_equal_transformers(tiny_architecture):
    hsd_loss, hsd = _grads(tiny_architecture, resolve_experts_implementation(None))
    ref_loss, ref = _grads(tiny_architecture, "eager")
    torch.testing.assert_close(hsd_loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert hsd.keys() == ref.keys()
    assert any("experts.gate_up_proj" in n for n in hsd) and any("router" in n for n in hsd)
    for name in ref:
        torch.testing.assert_close(hsd[name], ref[name], rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
