"""Where the refill decoder's time goes on a GPU (issue 17): a probe, not a benchmark.

It drives hsd's real generate path (``HFBackend.generate_stream`` -> ``RefillDecoder``) on the
bench's real workload (test-split rich prompts, output lengths drawn from recorded gpt-oss
answers) and reports, per slot count / admit threshold:

* the whole run (samples/s, the decoder's own counters);
* every admit timed on its own (synchronised before and after): rows, tail width, seconds;
* the decode step alone per row count (graph replays back to back) and with the per-step
  token choice + host sync, so the host's share of a step is visible;
* a torch.profiler table of one admit (CPU and CUDA time).

Usage (GPU, from the repository root; it imports ``benchmarks.cases``):
``PYTHONPATH=$PWD python tools/refill_probe.py --data-dir DATA --variants 256:8,512:8,512:16``.
Output: one JSON line per measurement on stdout and in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def emit(out: Any, row: dict[str, Any]) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    out.write(line + "\n")
    out.flush()


def timed_admits(dec: Any, log: list[dict[str, Any]]) -> None:
    """Wrap ``dec.admit_logits`` so each admit is timed alone (the decoder syncs before one anyway)."""
    orig = dec.admit_logits

    def wrapper(slots: list[int], tails: list[tuple[int, ...]]) -> Any:
        _sync()
        t0 = time.perf_counter()
        logits = orig(slots, tails)
        t_launch = time.perf_counter() - t0
        _sync()
        log.append({"rows": len(slots), "width": max(len(t) for t in tails),
                    "tokens": sum(len(t) for t in tails), "s": time.perf_counter() - t0, "host_s": t_launch})
        return logits

    dec.admit_logits = wrapper


def step_times(dec: Any, reps: int) -> list[dict[str, Any]]:
    """Per decode size: ms per replay back to back, and ms with argmax + host sync per step."""
    import torch

    rows = []
    with torch.inference_mode():
        pos = dec.cache.pos.clone()
        for n in dec.sizes():
            dec.step_logits(n)
            _sync()
            t0 = time.perf_counter()
            for _ in range(reps):
                dec.step_logits(n)
            _sync()
            bare = (time.perf_counter() - t0) / reps
            t0 = time.perf_counter()
            for _ in range(reps):
                tok = dec.step_logits(n).argmax(-1)
                dec.tok[:n, 0] = tok
                tok.nonzero().tolist()
            _sync()
            hosted = (time.perf_counter() - t0) / reps
            rows.append({"rows": n, "replay_ms": round(1000 * bare, 2), "with_choice_sync_ms": round(1000 * hosted, 2)})
            dec.cache.pos.copy_(pos)
    return rows


def attention_check(dec: Any) -> dict[str, Any]:
    """One decode step from the same cache state, eager vs compiled attention: logits and argmax."""
    import torch

    from hsd.gptoss.fusion import ATTENTION

    n, res = dec.cache.shape.rows, {}
    with torch.inference_mode():
        pos = dec.cache.pos.clone()
        for flag in (False, True):
            ATTENTION.enabled = flag  # model.compile_attention, switched in place
            dec.use_graph = False  # an eager step through the attention this flag selects
            res[flag] = dec.step_logits(n).clone()
            dec.cache.pos.copy_(pos)
        dec.use_graph = True
        a, b = res[False], res[True]
        return {"rows": n, "max_abs_diff": float((a - b).abs().max()), "logit_scale": float(a.abs().max()),
                "argmax_equal": float((a.argmax(-1) == b.argmax(-1)).float().mean())}


def kernel_check(device: str, rows: int = 512, prefix: int = 1724, own: int = 708) -> dict[str, Any]:
    """The shared-prefix decode attention at the real shapes on this GPU vs a float64 reference."""
    import torch

    from hsd.gptoss.attention import sinks_attention_forward

    g = torch.Generator(device=device).manual_seed(0)
    kv, group, d, dt = 8, 8, 64, torch.bfloat16

    def rnd(*shape: int, scale: float = 1.0) -> Any:
        return (torch.randn(*shape, generator=g, device=device) * scale).to(dt)

    q, k, v = rnd(rows, kv * group, 1, d, scale=2), rnd(rows, kv, own, d, scale=2), rnd(rows, kv, own, d)
    pk, pv, sinks = rnd(1, kv, prefix, d, scale=2), rnd(1, kv, prefix, d), rnd(kv * group)
    mask = torch.rand(rows, 1, 1, own, generator=g, device=device) > 0.5
    mask[..., 0] = True
    with torch.inference_mode():
        layer = SimpleNamespace(sinks=sinks, layer_idx=0, training=False)
        shared = SimpleNamespace(prefix=lambda i: (pk, pv), window_starts=lambda i: None)  # what the refill decoder's SlotCache provides
        got, _ = sinks_attention_forward(layer, q, k, v, mask, 0.125, hsd_prefix=shared)
        got = got.transpose(1, 2).double()  # (b, q, h, d) -> (b, h, 1, d)
        qd = q.double().view(rows, kv, group, d)
        keys = torch.cat([pk.double().expand(rows, -1, -1, -1), k.double()], 2)
        vals = torch.cat([pv.double().expand(rows, -1, -1, -1), v.double()], 2)
        full = torch.cat([torch.ones(rows, 1, 1, prefix, dtype=torch.bool, device=device), mask], -1)
        sc = (qd @ keys.transpose(-1, -2) * 0.125).masked_fill(~full[:, :, 0, :][:, :, None, :], float("-inf"))
        sc = torch.cat([sc, sinks.double().view(1, kv, group, 1).expand(rows, -1, -1, -1)], -1)
        ref = (torch.softmax(sc, -1)[..., :-1] @ vals).reshape(rows, kv * group, 1, d)
    return {"what": "kernel_check", "rows": rows, "max_abs_err": float((got - ref).abs().max()),
            "ref_scale": float(ref.abs().max())}


def profile_admit(dec: Any, tails: list[tuple[int, ...]]) -> str:
    import torch
    from torch.profiler import ProfilerActivity, profile

    slots = list(range(len(tails)))
    with torch.inference_mode():
        dec.admit_logits(slots, tails)  # once unprofiled (any first-shape work)
        _sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            dec.admit_logits(slots, tails)
            _sync()
    avg = prof.key_averages()
    return (avg.table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=50) + "\n"
            + avg.table(sort_by="cpu_time_total", row_limit=14, max_name_column_width=50))


def profile_steps(dec: Any, n: int, reps: int = 5) -> str:
    """Kernels of ``reps`` decode-step replays at ``n`` rows (top CUDA time)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        pos = dec.cache.pos.clone()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                dec.step_logits(n)
            _sync()
        dec.cache.pos.copy_(pos)
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70)


def main() -> int:
    import torch

    from benchmarks.cases import workload_prompts
    from hsd.config import from_dict, replace
    from hsd.gptoss.fusion import ATTENTION
    from hsd.inference import get_backend
    from hsd.inference.base import GenerationSettings
    from hsd.models.loader import load_tokenizer

    p = argparse.ArgumentParser()
    p.add_argument("--model", default="random:gpt-oss-20b")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--samples", type=int, default=1009)
    p.add_argument("--variants", default="256:8,512:8",
                   help="slots:admit_every[:c|e] comma-separated (c/e: decode attention compiled / eager)")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--profile-rows", type=int, default=32)
    p.add_argument("--out", default="refill_probe.jsonl")
    p.add_argument("--template", default="rich")
    p.add_argument("--shards", type=int, default=0,
                   help="also run each of N round-robin shards alone (what each rank of N-GPU data parallel runs)")
    p.add_argument("--quick", action="store_true", help="skip the per-size step timings, admit timings and profiles")
    a = p.parse_args()
    out = open(a.out, "a")
    base = from_dict({"model": {"name_or_path": a.model}, "inference": {"progress": False}})
    tok = load_tokenizer(base.model)
    wl = SimpleNamespace(data_dir=a.data_dir, workload_samples=a.samples, seed=0, workload_cap=0)
    prompts, lengths = workload_prompts(base, a.template, tok, wl)
    cap = max(lengths)
    dev = "cuda:0" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    backend = get_backend("hf")(replace(base, **{"inference.batch_size": 256}), dev, 0, tok)
    backend.reserve(cap)
    emit(out, {"what": "build", "s": round(time.perf_counter() - t0, 1), "gpu": torch.cuda.get_device_name(0) if dev != "cpu" else "cpu"})
    dec = backend.refill
    admits: list[dict[str, Any]] = []
    timed_admits(dec, admits)
    settings = GenerationSettings(max_new_tokens=cap, temperature=0.0, top_p=1.0)

    def run(idx: list[int], forced: list[int]) -> float:
        _sync()
        t = time.perf_counter()
        for _ in backend.generate_stream([prompts[i] for i in idx], settings, [list(range(len(idx)))], forced):
            pass
        _sync()
        return time.perf_counter() - t

    for spec in a.variants.split(","):
        fields = spec.split(":")
        slots, every = int(fields[0]), int(fields[1])
        attn = fields[2] if len(fields) > 2 else "c"
        ATTENTION.enabled = attn == "c"  # model.compile_attention, switched in place
        dec.graphs = {}  # recaptured at the next step with this attention
        backend.slots = slots  # inference.slots
        dec.admit_every = every
        n = len(prompts)
        warm = list(range(0, n, max(1, n // slots)))[:slots]
        if dev != "cpu":
            torch.cuda.reset_peak_memory_stats()
        warm_s = run(warm, [8] * len(warm))
        admits.clear()
        secs = run(list(range(n)), lengths)
        st = dict(dec.stats)
        adm = [x["s"] for x in admits]
        emit(out, {"what": "run", "slots": slots, "admit_every": every, "attention": attn, "samples": n, "s": round(secs, 2),
                   "samples_per_s": round(n / secs, 2), "warm_s": round(warm_s, 1),
                   "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if dev != "cpu" else None,
                   "steps": st["steps"], "slot_use": round(st["busy_row_steps"] / max(1, st["row_steps"]), 3),
                   "full_slot_use": round(st["busy_row_steps"] / max(1, st["steps"] * slots), 3),
                   "shrinks": st["shrinks"], "admits": len(adm), "admit_s": round(sum(adm), 2),
                   "admit_median_s": round(statistics.median(adm), 3) if adm else None,
                   "decode_ms_per_step": round(1000 * (secs - sum(adm)) / max(1, st["steps"]), 2),
                   "admit_detail": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in x.items()}
                                    for x in admits[:6]]})
        if a.shards:
            n_all = list(range(n))
            times = [run(n_all[i :: a.shards], lengths[i :: a.shards]) for i in range(a.shards)]
            emit(out, {"what": "shards", "slots": slots, "shards": a.shards, "whole_s": round(secs, 2),
                       "shard_s": [round(t, 2) for t in times],
                       "data_parallel_speedup": round(secs / max(times), 2)})
        if not a.quick:
            emit(out, {"what": "steps", "slots": slots, "attention": attn, "sizes": step_times(dec, a.reps)})
    if a.quick:
        return 0
    emit(out, {"what": "attention_check", **attention_check(dec)})
    emit(out, kernel_check(dev) if dev != "cpu" else kernel_check(dev, 8, 40, 12))
    p = dec.cache.shape.prefix
    tails = [tuple(x[p:]) for x in tok(prompts[: min(a.profile_rows, dec.cache.shape.rows)], add_special_tokens=False)["input_ids"]]
    for rows in [r for r in (8, 32, 64) if r <= dec.cache.shape.rows]:
        sub = (tails * 4)[:rows]
        times = []
        for _ in range(3):
            _sync()
            t = time.perf_counter()
            with torch.inference_mode():
                dec.admit_logits(list(range(rows)), sub)
            _sync()
            times.append(time.perf_counter() - t)
        emit(out, {"what": "admit_alone", "rows": rows, "width": max(len(t) for t in sub), "s": [round(x, 3) for x in times]})
    table = profile_steps(dec, dec.cache.shape.rows) if dev != "cpu" else ""
    print(table, flush=True)
    out.write(json.dumps({"what": "step_profile", "table": table}) + "\n")
    table = profile_admit(dec, tails)
    print(table, flush=True)
    out.write(json.dumps({"what": "admit_profile", "table": table}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
