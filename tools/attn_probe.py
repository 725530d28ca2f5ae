"""GPU probe of gpt-oss prefill attention variants: time, extra memory, error vs fp32 eager.

    PYTHONPATH=$PWD python3 tools/attn_probe.py      # on a CUDA machine; ~1 minute

Behind the attention table in BENCHMARKS.md: transformers' eager attention, hsd's sink-column
SDPA (the default, hsd.gptoss.attention) under each SDPA backend, and two log-sum-exp variants
(the sink applied as a sigmoid rescale) that a future kernel could use.
"""
import time, types, torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers.models.gpt_oss.modeling_gpt_oss import eager_attention_forward
from hsd.gptoss import attention

torch.manual_seed(0)
dev = "cuda"
def inputs(b, L, window=None):
    h, kv, d = 64, 8, 64
    q = torch.randn(b, h, L, d, device=dev, dtype=torch.bfloat16)
    k = torch.randn(b, kv, L, d, device=dev, dtype=torch.bfloat16)
    v = torch.randn(b, kv, L, d, device=dev, dtype=torch.bfloat16)
    i = torch.arange(L, device=dev)
    m = i[:, None] >= i[None, :]
    if window: m &= (i[:, None] - i[None, :]) < window
    mask = m.view(1, 1, L, L).expand(b, 1, L, L).clone()
    mod = types.SimpleNamespace(num_key_value_groups=8, sinks=torch.randn(h, device=dev, dtype=torch.bfloat16), training=False)
    return mod, q, k, v, mask

def lse_variant(mod, q, k, v, mask, scale):
    b, h, L, d = q.shape
    k = k.repeat_interleave(8, 1); v = v.repeat_interleave(8, 1)
    bias = torch.zeros(mask.shape, dtype=q.dtype, device=dev).masked_fill(~mask, float("-inf"))
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias.expand(b, h, L, L), True, 0.0, False, scale=scale)[:2]
    lse = lse[:, :, :L].float()
    w = torch.sigmoid(lse - mod.sinks.float().view(1, h, 1))
    return (out.float() * w.unsqueeze(-1)).to(q.dtype).transpose(1, 2)

def flash_lse_causal(mod, q, k, v, mask, scale):
    b, h, L, d = q.shape
    k = k.repeat_interleave(8, 1); v = v.repeat_interleave(8, 1)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, True, False, scale=scale)[:2]
    w = torch.sigmoid(lse.float() - mod.sinks.float().view(1, h, 1))
    return (out.float() * w.unsqueeze(-1)).to(q.dtype).transpose(1, 2)

def run(name, fn, b, L, window=None, reps=5):
    mod, q, k, v, mask = inputs(b, L, window)
    scale = 64 ** -0.5
    try:
        torch.cuda.synchronize(); torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        out = fn(mod, q, k, v, mask, scale); torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps): fn(mod, q, k, v, mask, scale)
        torch.cuda.synchronize(); ms = (time.perf_counter() - t) / reps * 1e3
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        # correctness vs eager in float32 on the first 2 rows
        fm = torch.zeros(2, 1, L, L, device=dev).masked_fill(~mask[:2], torch.finfo(torch.float32).min)
        m32 = types.SimpleNamespace(num_key_value_groups=8, sinks=mod.sinks.float(), training=False)
        ref = eager_attention_forward(m32, q[:2].float(), k[:2].float(), v[:2].float(), fm, scaling=scale)[0]
        err = ((out[:2].float() - ref).norm() / ref.norm()).item()
        print(f"{name:28s} b={b:3d} L={L} win={window}: {ms:8.2f} ms  peak {peak:6.2f} GiB  rel err {err:.2e}", flush=True)
    except Exception as e:
        print(f"{name:28s} b={b} L={L}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)

def hsd(mod, q, k, v, mask, scale):
    return attention.sinks_attention_forward(mod, q, k, v, mask, scale)[0]
def hsd_eff(mod, q, k, v, mask, scale):
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
        return hsd(mod, q, k, v, mask, scale)
def hsd_cudnn(mod, q, k, v, mask, scale):
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        return hsd(mod, q, k, v, mask, scale)
def eager(mod, q, k, v, mask, scale):
    fm = torch.zeros(mask.shape, device=dev, dtype=q.dtype).masked_fill(~mask, torch.finfo(q.dtype).min)
    return eager_attention_forward(mod, q, k, v, fm, scaling=scale)[0]

for b in (16, 64):
    for name, fn in [("eager", eager), ("hsd auto", hsd), ("hsd efficient-only", hsd_eff), ("hsd cudnn-only", hsd_cudnn),
                     ("lse efficient", lse_variant), ("lse flash causal", flash_lse_causal)]:
        if name == "eager" and b == 64: continue
        run(name, fn, b, 1024)
run("hsd auto", hsd, 16, 1024, window=128)
run("lse efficient", lse_variant, 16, 1024, window=128)
