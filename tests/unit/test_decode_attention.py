"""Decode attention over a shared prefix equals attention over [prefix, own keys, sink].

The refill decoder's full-attention layers keep the prompts' shared prefix once and each row's
own keys per slot; ``sinks_attention_forward`` (with ``hsd_prefix``) runs the prefix part as one
attention with its log-sum-exp and merges it with the own keys and gpt-oss's per-head sink.
Checked against the same attention written out in float64 (masked own keys included), and the
log-sum-exp helpers against each other (the CPU flash kernel vs the plain-math one a float32 model
gets on a GPU).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hsd.gptoss.attention import sinks_attention_forward
from hsd.gptoss.prefix_attention import attention_with_lse, math_attention_with_lse


def reference(q, k, v, mask, sinks, scale, pk, pv):
    """float64 softmax over [prefix keys, own keys (masked), sink]; the sink has no value."""
    b, h, _, d = q.shape
    kv, group, p = k.shape[1], h // k.shape[1], pk.shape[2]
    qd = q.double().view(b, kv, group, d)
    keys = torch.cat([pk.double().expand(b, -1, -1, -1), k.double()], 2)
    vals = torch.cat([pv.double().expand(b, -1, -1, -1), v.double()], 2)
    seen = torch.cat([torch.ones(b, 1, 1, p, dtype=torch.bool), mask], -1)[:, :, 0, :][:, :, None, :]
    scores = (qd @ keys.transpose(-1, -2) * scale).masked_fill(~seen, float("-inf"))
    scores = torch.cat([scores, sinks.double().view(1, kv, group, 1).expand(b, -1, -1, -1)], -1)
    return (torch.softmax(scores, -1)[..., :-1] @ vals).reshape(b, h, 1, d)


def inputs(dtype, b=6, kv=2, group=4, d=16, prefix=40, own=12, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    mask = torch.rand(b, 1, 1, own, generator=g) > 0.4
    mask[..., 0] = True  # a decoding row always sees its own newest key
    return (rnd(b, kv * group, 1, d, scale=2), rnd(b, kv, own, d, scale=2), rnd(b, kv, own, d), mask,
            rnd(kv * group), 0.25, rnd(1, kv, prefix, d, scale=2), rnd(1, kv, prefix, d))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 0.05)])
def test_shared_prefix_decode_equals_attention_over_the_concatenation(dtype, tol):
    q, k, v, mask, sinks, scale, pk, pv = inputs(dtype)
    layer = SimpleNamespace(sinks=sinks, layer_idx=0, training=False)
    got, _ = sinks_attention_forward(layer, q, k, v, mask, scale, hsd_prefix=SimpleNamespace(prefix=lambda i: (pk, pv), window_starts=lambda i: None))
    want = reference(q, k, v, mask, sinks, scale, pk, pv)
    err = (got.transpose(1, 2).double() - want).abs().max().item()
    assert err < tol, err


def test_a_strong_sink_and_a_masked_row_stay_finite():
    q, k, v, mask, sinks, scale, pk, pv = inputs(torch.float32)
    sinks = torch.full_like(sinks, 60.0)  # the sink takes nearly all the weight
    mask[:, :, :, 1:] = False
    layer = SimpleNamespace(sinks=sinks, layer_idx=0, training=False)
    got, _ = sinks_attention_forward(layer, q, k, v, mask, scale, hsd_prefix=SimpleNamespace(prefix=lambda i: (pk, pv), window_starts=lambda i: None))
    want = reference(q, k, v, mask, sinks, scale, pk, pv)
    assert torch.isfinite(got).all()
    assert (got.transpose(1, 2).double() - want).abs().max().item() < 1e-5


def test_log_sum_exp_helpers_agree():
    q, _, _, _, _, scale, pk, pv = inputs(torch.float32)
    qp = q.view(6, 2, 4, 16).transpose(0, 1).reshape(1, 2, 24, 16)
    out_a, lse_a = attention_with_lse(qp, pk, pv, scale)  # CPU: torch's flash kernel
    out_b, lse_b = math_attention_with_lse(qp, pk, pv, scale)
    scores = (qp.double() @ pk.double().transpose(-1, -2)) * scale
    assert torch.allclose(lse_a.double(), torch.logsumexp(scores, -1), atol=1e-5)
    assert torch.allclose(lse_b.double(), torch.logsumexp(scores, -1), atol=1e-5)
    assert torch.allclose(out_a, out_b, atol=1e-5)


def reference_many(q, k, v, mask, sinks, scale, pk, pv):
    """:func:`reference` for ``n`` query tokens per row: mask (b, 1, n, k) over the own keys."""
    b, h, n, d = q.shape
    kv, group, p = k.shape[1], h // k.shape[1], pk.shape[2]
    qd = q.double().view(b, kv, group, n, d)
    keys = torch.cat([pk.double().expand(b, -1, -1, -1), k.double()], 2)[:, :, None]  # (b, kv, 1, P+k, d)
    vals = torch.cat([pv.double().expand(b, -1, -1, -1), v.double()], 2)[:, :, None]
    seen = torch.cat([torch.ones(b, 1, n, p, dtype=torch.bool), mask], -1)[:, :, None]  # (b, 1, 1, n, P+k)
    scores = (qd @ keys.transpose(-1, -2) * scale).masked_fill(~seen, float("-inf"))
    scores = torch.cat([scores, sinks.double().view(1, kv, group, 1, 1).expand(b, -1, -1, n, -1)], -1)
    return (torch.softmax(scores, -1)[..., :-1] @ vals).reshape(b, h, n, d)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 0.05)])
def test_an_admits_tails_over_the_shared_prefix_equal_attention_over_the_concatenation(dtype, tol):
    """A refill's admit: several query tokens per row, causal over the row's own keys (right-padded
    tails), the prefix seen by all — read once, not expanded per row."""
    b, n, own = 5, 7, 7
    q, k, v, _, sinks, scale, pk, pv = inputs(dtype, b=b, own=own)
    q = torch.randn(b, q.shape[1], n, q.shape[3], generator=torch.Generator().manual_seed(1)).to(dtype) * 2
    mask = torch.ones(n, own, dtype=torch.bool).tril().expand(b, 1, n, own).clone()
    mask[0, :, :, 3:] = False  # a short tail: its padding keys are never seen
    layer = SimpleNamespace(sinks=sinks, layer_idx=0, training=False)
    got, _ = sinks_attention_forward(layer, q, k, v, mask, scale, hsd_prefix=SimpleNamespace(prefix=lambda i: (pk, pv), window_starts=lambda i: None))
    want = reference_many(q, k, v, mask, sinks, scale, pk, pv)
    assert got.shape == (b, n, q.shape[1], q.shape[3])
    err = (got.transpose(1, 2).double() - want).abs().max().item()
    assert err < tol, err
