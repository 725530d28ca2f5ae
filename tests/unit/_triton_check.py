"""Run by test_triton_kernels.py in a fresh interpreter with ``TRITON_INTERPRET=1`` (Triton reads it
when its kernels are defined): hsd's Triton kernels (the experts' stages, the decode attention) on
CPU tensors vs the eager code they replace. ``python tests/unit/_triton_check.py cuda`` checks the
compiled kernels on a GPU the same way."""

from __future__ import annotations

import sys

import torch

from hsd.gptoss import triton_attention, triton_experts as kernels
from hsd.gptoss.attention import _decode_attention, _window_attention
from hsd.gptoss.experts import _combine, _gate
from hsd.gptoss.prefix_attention import shared_prefix_attention
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


def reference_attention(query, key, value, mask, sinks, scaling, prefix=None):
    """float64 attention over [prefix, own keys] with the sink as an extra logit: the definition."""
    b, h, _, d = query.shape
    kv = key.shape[1]
    q = query.double().reshape(b, kv, h // kv, d)
    k, v = key.double(), value.double()
    visible = mask[:, 0, 0, :] if mask is not None else torch.ones(b, key.shape[2], dtype=torch.bool)
    if prefix is not None:
        pk, pv = (t.double().expand(b, -1, -1, -1) for t in prefix)
        k, v = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
        visible = torch.cat([torch.ones(b, pk.shape[2], dtype=torch.bool), visible], 1)
    scores = (q @ k.transpose(2, 3)) * scaling
    scores = scores.masked_fill(~visible[:, None, None, :], float("-inf"))
    sink = sinks.double().view(1, kv, h // kv, 1).expand(b, -1, -1, -1)
    probs = torch.softmax(torch.cat([scores, sink], -1), -1)[..., :-1]
    return (probs @ v).reshape(b, h, 1, d)


def attention_case(dtype: torch.dtype, rows: int, keys: int, prefix: int, masked: bool) -> None:
    kv, group, d = 2, 8, 64  # gpt-oss: 8 KV heads of 8 query heads, d 64
    h = kv * group
    query = torch.randn(rows, 1, h, d).to(dtype).transpose(1, 2)  # (b, h, 1, d), strided as transformers'
    key, value = torch.randn(rows, kv, keys, d).to(dtype), torch.randn(rows, kv, keys, d).to(dtype)
    sinks = torch.randn(h).to(dtype)
    mask = None
    if masked:  # right-padded rows, one of them with no visible own key at all
        lengths = torch.randint(0, keys + 1, (rows,))
        lengths[0] = 0
        mask = (torch.arange(keys)[None, :] < lengths[:, None]).view(rows, 1, 1, keys)
    scaling = d ** -0.5
    name = f"attention {dtype} rows {rows} keys {keys} prefix {prefix} masked {masked}"
    if prefix:
        pk, pv = torch.randn(1, kv, prefix, d).to(dtype), torch.randn(1, kv, prefix, d).to(dtype)
        got = triton_attention.shared(query, key, value, mask, sinks, scaling, pk, pv)
        eager = shared_prefix_attention(query, key, value, mask, sinks, scaling, pk, pv)
        exact = reference_attention(query, key, value, mask, sinks, scaling, (pk, pv))
    else:
        got = triton_attention.decode(query, key, value, mask, sinks, scaling)
        eager = _decode_attention(query, key, value, mask, sinks, scaling)
        exact = reference_attention(query, key, value, mask, sinks, scaling)
    assert got.shape == eager.shape == (rows, h, 1, d) and got.dtype == dtype, name
    assert got.transpose(1, 2).is_contiguous(), name  # the caller's (b, 1, h, d) copy is free
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: probabilities meet the values in bf16
    torch.testing.assert_close(got.double(), exact, rtol=tol, atol=tol, msg=name)
    torch.testing.assert_close(got.double(), eager.double(), rtol=2 * tol, atol=2 * tol, msg=name)


def window_case(dtype: torch.dtype, rows: int, store: int, width: int) -> None:
    """A sliding window read in place: row r attends to ``width`` columns of its (kv, store, d) keys
    from ``starts[r]``; against the eager gather-then-attend and the definition on the copied window."""
    kv, group, d = 2, 8, 64
    h = kv * group
    query = torch.randn(rows, 1, h, d).to(dtype).transpose(1, 2)
    key, value = torch.randn(rows, kv, store, d).to(dtype), torch.randn(rows, kv, store, d).to(dtype)
    sinks = torch.randn(h).to(dtype)
    starts = torch.randint(0, store - width + 1, (rows,))
    starts[0] = store - width  # the store's last columns
    mask = torch.rand(rows, 1, 1, width) > 0.3
    mask[-1] = False  # a row that sees no key: the sink alone
    name = f"window {dtype} rows {rows} store {store} width {width}"
    got = triton_attention.window(query, key, value, mask, sinks, d ** -0.5, starts)
    eager = _window_attention(query, key, value, mask, sinks, d ** -0.5, starts)
    cols = starts[:, None] + torch.arange(width)
    copied = [torch.stack([t[r, :, cols[r]] for r in range(rows)]) for t in (key, value)]
    exact = reference_attention(query, copied[0], copied[1], mask, sinks, d ** -0.5)
    assert got.shape == eager.shape == (rows, h, 1, d) and got.dtype == dtype, name
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.double(), exact, rtol=tol, atol=tol, msg=name)
    torch.testing.assert_close(got.double(), eager.double(), rtol=2 * tol, atol=2 * tol, msg=name)


def main() -> None:
    torch.manual_seed(0)
    if sys.argv[1:] == ["cuda"]:
        torch.set_default_device("cuda")
    for dtype in (torch.float32, torch.bfloat16):
        for rows, width in ((7, 40), (3, kernels.BLOCK + 100), (0, 40)):  # a masked second block; no rows
            gate_case(dtype, rows, width)
            combine_case(dtype, rows, width)
    for dtype in (torch.float32, torch.bfloat16):
        for rows, keys, prefix, masked in ((3, 128, 0, True), (2, 150, 0, False), (3, 9, 40, True), (1, 64, 70, False)):
            attention_case(dtype, rows, keys, prefix, masked)
        for rows, store, width in ((4, 300, 128), (3, 20, 20)):  # two key blocks; the whole store
            window_case(dtype, rows, store, width)
    # Through the experts' fusion family, uncompiled, as on CUDA: the kernel serves "gate"; a stage
    # without a kernel ("gate_backward") runs its eager lines.
    family = Fusion("test", handwritten=kernels.__name__)
    family.enabled = False
    h, bias, ids = torch.randn(4, 80), torch.randn(2, 80), torch.tensor([0, 0, 1, 1])
    through = family("gate", _gate, True, h, bias, ids, ALPHA, LIMIT)
    torch.testing.assert_close(through, _gate(h, bias, ids, ALPHA, LIMIT))
    assert family._kernels == {"gate": kernels.gate}
    family("gate_backward", lambda *a: None, True)
    assert family._kernels["gate_backward"] is None
    print("ok")


if __name__ == "__main__":
    main()
