"""GPU probe of one LoRA training step on the full-size gpt-oss-20b architecture (random bf16).

    PYTHONPATH=$PWD python3 tools/train_probe.py [--profile] [variant ...]   # CUDA machine

Where ``hsd train``'s time goes, without DeepSpeed, Accelerate or data loading in the way: each
variant builds the model in place (hsd.models.fullsize), puts hsd's LoRA on it
(hsd.training.lora.apply_lora), and times forward + backward + AdamW on micro-batches of
random token ids with an answer at the end of each row, the loss computed by hsd's own
``answer_loss_sum``. A variant is ``attn/experts/targets/micro_batch/checkpointing``, e.g.
``auto/auto/qkvo/4/ckpt/fnorm`` (hsd train's defaults), ``auto/nocompile/qkvo/4/ckpt`` (hsd's experts with
``model.compile_experts: false``) or ``eager/eager/qv/4/ckpt`` (the old pipeline's); a sixth field
``fnorm`` adds hsd train's fused RMSNorm (hsd.gptoss.norm). Prints one JSON
line per variant (the two warm-up steps' seconds — the first pays for compilation —, then
tokens/s, s/step and peak GiB of the timed steps) and, with ``--profile``, the CUDA kernel
table of the first variant. Behind the training section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import time

import torch

from hsd.config import LoraConfig
from hsd.gptoss.kernels import resolve_attn_implementation, resolve_experts_implementation
from hsd.gptoss.norm import fuse_rms_norms
from hsd.models.fullsize import build_random
from hsd.training.dataset import IGNORE
from hsd.training.lora import apply_lora
from hsd.training.loop import answer_loss_sum

TARGETS = {"qv": ("q_proj", "v_proj"), "qkvo": ("q_proj", "k_proj", "v_proj", "o_proj")}
SEQ, ANSWER = 1024, 6


def build(attn: str, experts: str, targets: str, checkpointing: bool, norms: str = "eager"):
    compile_experts = experts != "nocompile"  # model.compile_experts
    experts = "auto" if experts == "nocompile" else experts
    model = build_random(attn_implementation=resolve_attn_implementation(attn),
                         experts_implementation=resolve_experts_implementation(None if experts == "auto" else experts,
                                                                               compile_experts))
    model.config.use_cache = False
    if norms == "fnorm":  # hsd train's norms (hsd.gptoss.norm); "eager": transformers' GptOssRMSNorm
        fuse_rms_norms(model)
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = apply_lora(model, LoraConfig(r=32, alpha=64, dropout=0.05, target_modules=TARGETS[targets]), seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(params, lr=1e-4)


def batch(micro: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 199_000, (micro, SEQ), generator=gen)
    labels = torch.full_like(ids, IGNORE)
    labels[:, -ANSWER:] = ids[:, -ANSWER:]
    return {"input_ids": ids.cuda(), "attention_mask": torch.ones_like(ids).cuda(), "labels": labels.cuda()}


def step(model, opt, b) -> float:
    loss_sum, count = answer_loss_sum(model, b)
    loss = loss_sum / count
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def run_variant(spec: str, steps: int, profile: bool) -> dict:
    attn, experts, targets, micro, ckpt, *norms = spec.split("/")
    micro = int(micro)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = opt = None
    try:
        model, opt = build(attn, experts, targets, ckpt == "ckpt", *norms)
        gen = torch.Generator().manual_seed(0)
        warmup = []
        for _ in range(2):  # warm-up: compilation, allocator
            start = time.perf_counter()
            step(model, opt, batch(micro, gen))
            torch.cuda.synchronize()
            warmup.append(round(time.perf_counter() - start, 2))
        start = time.perf_counter()
        for _ in range(steps):
            loss = step(model, opt, batch(micro, gen))
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        out = {"variant": spec, "warmup_s": warmup, "tokens_per_s": round(steps * micro * SEQ / elapsed, 1),
               "s_per_step": round(elapsed / steps, 4), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
               "loss": round(loss, 3)}
        if profile:
            from torch.profiler import ProfilerActivity, profile as prof

            with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
                for _ in range(2):
                    step(model, opt, batch(micro, gen))
                torch.cuda.synchronize()
            print(p.key_averages().table(sort_by="cuda_time_total", row_limit=45, max_name_column_width=70), flush=True)
        return out
    except torch.OutOfMemoryError as exc:
        return {"variant": spec, "error": "out of memory", "detail": str(exc).splitlines()[0][:200],
                "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    finally:
        del model, opt
        gc.collect()
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["auto/auto/qkvo/4/ckpt", "eager/eager/qv/4/ckpt"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="kernel table of the first variant")
    args = parser.parse_args()
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
    for i, spec in enumerate(args.variants):
        print(json.dumps(run_variant(spec, args.steps, args.profile and i == 0)), flush=True)


if __name__ == "__main__":
    main()
