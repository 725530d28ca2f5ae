"""Run by test_triton_experts.py in a fresh interpreter with ``TRITON_INTERPRET=1`` (Triton reads it
when its kernels are defined): the experts' Triton kernels on CPU tensors vs the eager stages.
``python tests/unit/_triton_experts_check.py cuda`` checks the compiled kernels on a GPU the same way."""

from __future__ import annotations

import sys

import torch

from hsd.gptoss import triton_experts as kernels
from hsd.gptoss.experts import _combine, _gate
from hsd.gptoss.fusion import Fusion

ALPHA, LIMIT = 1.702, 7.0


def ulp(x: torch.Tensor) -> torch.Tensor:
    """One bf16 step at each value (8 significant bits)."""
    return torch.ldexp(torch.ones_like(x), torch.frexp(x.abs().clamp(min=1e-30))[1] - 8)


def check(name: str, got: torch.Tensor, exact: torch.Tensor, eager: torch.Tensor) -> None:
    """fp32 inputs: equal to eager up to fp32 rounding. bf16: within one step of the stage computed
    in fp32 from the same inputs (rounded once; Triton's interpreter truncates where the GPU rounds to
    nearest). Eager bf16 is not the yardstick: it rounds after every op, and where ``up + 1`` cancels
    it is many steps off (-0.086 for -0.107)."""
    assert got.shape == eager.shape and got.dtype == eager.dtype, name
    if got.dtype == torch.float32:
        torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-5, msg=name)
        return
    err = (got.float() - exact).abs()
    assert bool((err <= ulp(exact)).all()), f"{name}: {err.max()} off the once-rounded value"


def gate_case(dtype: torch.dtype, rows: int, width: int, experts: int = 5) -> None:
    h = (torch.randn(rows, 2 * width) * 6).to(dtype)  # * 6: many values beyond the +-7 limit
    bias = torch.randn(experts, 2 * width).to(dtype)
    ids = torch.sort(torch.randint(0, experts, (rows,)))[0]
    exact = _gate(h.float(), bias.float(), ids, ALPHA, LIMIT)
    check(f"gate {dtype} {rows}x{width}", kernels.gate(h, bias, ids, ALPHA, LIMIT), exact,
          _gate(h, bias, ids, ALPHA, LIMIT))


def combine_case(dtype: torch.dtype, tokens: int, width: int, k: int = 4, experts: int = 6) -> None:
    out = torch.randn(tokens * k, width).to(dtype)
    bias = torch.randn(experts, width).to(dtype)
    ids = torch.sort(torch.randint(0, experts, (tokens * k,)))[0]
    weights = torch.softmax(torch.randn(tokens * k), 0).to(dtype)
    perm = torch.randperm(tokens * k)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(tokens * k)
    if not tokens:  # eager cannot view 0 rows as (0, k, -1); the kernel returns its empty result
        assert kernels.combine(out, bias, ids, weights, inv, 0, k).shape == (0, width)
        return
    exact = _combine(out.float(), bias.float(), ids, weights.float(), inv, tokens, k)
    check(f"combine {dtype} {tokens}x{width}", kernels.combine(out, bias, ids, weights, inv, tokens, k), exact,
          _combine(out, bias, ids, weights, inv, tokens, k))


def main() -> None:
    torch.manual_seed(0)
    if sys.argv[1:] == ["cuda"]:
        torch.set_default_device("cuda")
    for dtype in (torch.float32, torch.bfloat16):
        for rows, width in ((7, 40), (3, kernels.BLOCK + 100), (0, 40)):  # a masked second block; no rows
            gate_case(dtype, rows, width)
            combine_case(dtype, rows, width)
    # Through the experts' fusion family, uncompiled, as on CUDA: the kernel serves "gate"; a stage
    # without a kernel ("gate_backward") runs its eager lines.
    family = Fusion("test", handwritten=kernels.__name__)
    family.enabled = False
    h, bias, ids = torch.randn(4, 80), torch.randn(2, 80), torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(family("gate", _gate, True, h, bias, ids, ALPHA, LIMIT), _gate(h, bias, ids, ALPHA, LIMIT))
    assert family._kernels == {"gate": kernels.gate}
    family("gate_backward", lambda *a: None, True)
    assert family._kernels["gate_backward"] is None
    print("ok")


if __name__ == "__main__":
    main()
