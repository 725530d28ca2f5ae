"""``hsd bench --out BENCHMARKS.json``: inference speed on the full-size gpt-oss-20b architecture.

(``make bench`` runs it.) Builds ``random:gpt-oss-20b`` (random bf16 weights, built on the GPU,
hsd.models.fullsize) and measures side by side, in one process, through the real backend
(``HFBackend.generate`` / ``.score``, the functions ``hsd validate`` calls per batch):

* ``old``      — the old pipeline's setting: HF generate, batch 4, eager attention and experts;
* ``generate`` — hsd's default generate path (sink-aware SDPA, grouped_mm experts, static
  cache + CUDA-graph decode) at ``--batch-size``;
* ``score``    — score mode on the same prompts (no shared prefix: every token is new);
* ``score_rich`` — score mode on prompts shaped like the rich template (a shared system +
  few-shot prefix, a per-sample tail): the prefix KV is computed once.

Each generate case runs at every ``--new-tokens`` (forced with min_new_tokens). Reported per
case: samples/s, new tokens/s, peak GPU memory, ratio to ``old`` in samples/s. Each backend is
built, warmed up (compilation excluded, its time reported), timed, and freed before the next.
Results go to the JSON file and a table between markers in BENCHMARKS.md.
"""

from __future__ import annotations

import gc
import json
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hsd.config import Config, from_dict, replace
from hsd.errors import HsdError

MD_BEGIN, MD_END = "<!-- hsd-bench:begin -->", "<!-- hsd-bench:end -->"
_WORDS = ("group", "people", "text", "language", "speech", "post", "comment", "community", "policy",
          "attack", "identity", "religion", "origin", "respect", "insult", "context", "example", "label")


@dataclass(frozen=True)
class Case:
    name: str
    what: str  # the table's description
    mode: str  # generate | score
    overrides: dict[str, Any] = field(default_factory=dict)
    shared_prefix: bool = False  # score_rich: prompts share a long system + few-shot prefix
    shortest_only: bool = False  # measure only the shortest --new-tokens (slow cases)
    workload: Optional[str] = None  # rich | simple: hsd's own prompts, recorded output lengths (run_workload)


def cases(batch_size: int, old_batch_size: int, slots: Optional[int] = None) -> list[Case]:
    """``slots`` None: the refill cases size their slots by free memory, as validate does."""
    what = f"{slots} slots" if slots else "slots by memory"
    workload = [  # listed after the synthetic cases
        c for t in ("rich", "simple") for c in (
            Case(t, f"real workload, {t} prompt: hsd generate, shared prefix + refill, {what}", "generate",
                 {"inference.slots": slots}, workload=t),
            Case(f"{t}_static", f"real workload, {t} prompt: static batches of {batch_size} (before refill)",
                 "generate", {"inference.batch_size": batch_size, "inference.refill": False}, workload=t))]
    return [*synthetic(batch_size, old_batch_size), *workload]


def synthetic(batch_size: int, old_batch_size: int) -> list[Case]:
    """Random-word prompts of --prompt-tokens, outputs forced to each --new-tokens."""
    return [
        Case("old", f"old setting: HF generate, bs {old_batch_size}, eager attention + experts", "generate",
             {"model.attn_implementation": "eager", "model.experts_implementation": "eager",
              "inference.batch_size": old_batch_size, "inference.static_cache": False,
              "inference.cuda_graphs": False}),
        Case("generate", f"hsd default generate path, bs {batch_size}", "generate",
             {"inference.batch_size": batch_size}),
        Case("score", f"score mode, bs {batch_size}, no shared prefix", "score",
             {"inference.batch_size": batch_size, "inference.mode": "score"}),
        Case("score_rich", f"score mode, bs {batch_size}, rich-template shape (shared prefix cached)", "score",
             {"inference.batch_size": batch_size, "inference.mode": "score"}, shared_prefix=True),
        Case("deepspeed", f"deepspeed backend (ZeRO-3, world size 1), bs {max(1, batch_size // 4)}", "generate",
             {"inference.backend": "deepspeed", "inference.batch_size": max(1, batch_size // 4)},
             shortest_only=True),
    ]


def make_prompts(tokenizer: Any, n: int, tokens: int, shared_prefix: bool, seed: int, score: bool) -> list[str]:
    """``n`` chat prompts of about ``tokens`` tokens of random words (distinct per sample).

    With ``shared_prefix`` the system message (~85% of the tokens) is the same for every
    sample, as the rich template's policy and few-shot turns are.
    """
    from hsd.prompts.prompter import SCORE_SUFFIX

    rng = random.Random(seed)
    words = lambda k: " ".join(rng.choice(_WORDS) for _ in range(k))  # noqa: E731
    render = lambda sys_, user: tokenizer.apply_chat_template(  # noqa: E731
        [{"role": "system", "content": sys_}, {"role": "user", "content": user}],
        tokenize=False, add_generation_prompt=True, reasoning_effort="low") + (SCORE_SUFFIX if score else "")
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    per_word = count(words(400)) / 400
    budget = max(8, tokens - count(render("", ""))) / per_word  # words left after the template's own tokens
    shared = words(int(budget * 0.85)) if shared_prefix else None
    return [render(shared or words(int(budget * 0.85)), words(int(budget * 0.15))) for _ in range(n)]


def workload_prompts(cfg: Config, template: str, tokenizer: Any, args: Any) -> tuple[list[str], list[int]]:
    """The test split's prompts rendered by hsd (``template``, the model's tokenizer), longest first,
    and an output length per prompt drawn from real gpt-oss answers (hsd.bench_lengths)."""
    from hsd.bench_lengths import RESPONSE_TOKENS
    from hsd.data import select_samples
    from hsd.prompts import Prompter

    wcfg = replace(cfg, **{"prompt.template": template, "data.dir": args.data_dir, "data.split": "test",
                           "data.max_samples": args.workload_samples})
    samples = select_samples(wcfg.data)
    prompter = Prompter.from_config(wcfg, tokenizer, {s.id for s in samples})
    prompts = [prompter.render(s) for s in samples]
    sizes = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    prompts = [prompts[i] for i in sorted(range(len(prompts)), key=lambda i: -sizes[i])]  # as validate orders them
    rng = random.Random(args.seed)
    cap = args.workload_cap or max(RESPONSE_TOKENS)
    return prompts, [min(cap, rng.choice(RESPONSE_TOKENS)) for _ in prompts]


def run_workload(cfg: Config, case: Case, tokenizer: Any, args: Any) -> list[dict[str, Any]]:
    """The workload validate runs: hsd's prompts, each row stopping at its drawn length.

    Refill (``inference.refill``, the default): rows end at their own length (a forced stop) and
    their slots take the next prompts. Static batches (the path before refill): a batch runs until
    its longest row, so each batch decodes max(its lengths) steps; samples/s and new tokens/s
    count each row's drawn length only. Both caches are sized for the longest length up front
    (``reserve_new_tokens``) so the warm-up captures the graph the timed run replays.
    """
    import torch

    from hsd.inference import get_backend
    from hsd.inference.base import GenerationSettings

    prompts, lengths = workload_prompts(cfg, case.workload, tokenizer, args)
    ccfg = replace(cfg, **case.overrides)
    bs, cap, n = ccfg.inference.batch_size, max(lengths), len(prompts)
    sizes = [len(x) for x in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t_build = time.perf_counter()
    backend = get_backend(ccfg.inference.backend)(ccfg, args.device, 0, tokenizer)
    backend.reserve_new_tokens = cap
    build_s = time.perf_counter() - t_build

    def run(idx: list[int], forced: list[int]) -> None:
        if ccfg.inference.refill:
            s = GenerationSettings(max_new_tokens=cap, temperature=0.0, top_p=1.0)
            for _ in backend.generate_stream([prompts[i] for i in idx], s, [list(range(len(idx)))], forced):
                pass
            return
        for k in range(0, len(idx), bs):
            m = max(forced[k : k + bs])
            backend.generate([prompts[i] for i in idx[k : k + bs]],
                             GenerationSettings(max_new_tokens=m, temperature=0.0, top_p=1.0, min_new_tokens=m))

    try:
        if ccfg.inference.refill:  # every prompt, 8 tokens each: the timed run's slots, prefix and graphs
            warm = list(range(n))
        else:  # one batch spread over the set: its shared prefix is the set's
            warm = list(range(0, n, max(1, n // bs)))[:bs]
        warm_s = _timed(lambda: run(warm, [8] * len(warm)))
        seconds = _timed(lambda: run(list(range(n)), lengths))
        row = {"case": case.name, "what": case.what, "mode": "generate", "batch_size": bs, "samples": n,
               "prompt_tokens": round(sum(sizes) / n, 1), "new_tokens": f"recorded (mean {sum(lengths) / n:.0f})",
               "seconds": round(seconds, 3), "samples_per_s": round(n / seconds, 3),
               "new_tokens_per_s": round(sum(lengths) / seconds, 1),
               "prompt_tokens_per_s": round(sum(sizes) / seconds, 1), "warmup_s": round(warm_s, 2),
               "build_s": round(build_s, 2), "peak_gib": _peak_gib(), "workload": case.workload}
        if getattr(backend, "refill", None) is not None and backend.refill.cache is not None:
            bs = row["slots"] = backend.refill.rows
            del row["batch_size"]
            row["shared_prefix_tokens"] = backend.refill.cache.shape.prefix
            st = backend.refill.stats  # where the time went: admits (prefill) vs decode steps, slot use
            row["refill"] = {**st, "admit_s": round(st["admit_s"], 2),
                             "slot_use": round(st["busy_row_steps"] / max(1, st["steps"] * bs), 3),
                             "ms_per_step": round(1000 * (seconds - st["admit_s"]) / max(1, st["steps"]), 2)}
        print(json.dumps(row), flush=True)
        if args.profile and torch.cuda.is_available():
            # one fill of the slots, outputs capped at 64 tokens: the kernel mix, in a table that summarises in seconds
            row["profile"] = _profile(lambda: run(list(range(min(n, bs))), [min(64, x) for x in lengths[:bs]]))
        return [row]
    finally:
        del backend
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _peak_gib() -> Optional[float]:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Any) -> float:
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def run_case(cfg: Config, case: Case, tokenizer: Any, args: Any) -> list[dict[str, Any]]:
    """Build the case's backend, warm it up, time it at every output length; free it."""
    import torch

    from hsd.inference import get_backend
    from hsd.inference.base import GenerationSettings

    cuda = torch.cuda.is_available()
    ccfg = replace(cfg, **case.overrides)
    bs = ccfg.inference.batch_size
    n = (args.old_batches if case.name == "old" else args.batches) * bs
    prompts = make_prompts(tokenizer, n + bs, args.prompt_tokens, case.shared_prefix, seed=1, score=case.mode == "score")
    warm, timed = prompts[:bs], prompts[bs:]
    prompt_tokens = sum(len(x) for x in tokenizer(timed, add_special_tokens=False)["input_ids"]) / n
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t_build = time.perf_counter()
    backend = get_backend(ccfg.inference.backend)(ccfg, args.device, 0, tokenizer)
    build_s = time.perf_counter() - t_build
    rows = []
    try:
        lengths = [None] if case.mode == "score" else sorted(args.new_tokens, reverse=True)
        lengths = lengths[-1:] if case.shortest_only else lengths
        for new in lengths:  # longest first: the static cache is sized once, for the longest
            s = GenerationSettings(max_new_tokens=new or 1, temperature=0.0, top_p=1.0, min_new_tokens=new)
            call = (lambda p: backend.score(p)) if case.mode == "score" else (lambda p: backend.generate(p, s))
            # A static cache is sized by its first batch (and compiled for it): warm up at full length.
            short = GenerationSettings(max_new_tokens=4, temperature=0.0, top_p=1.0, min_new_tokens=4)
            full = case.mode == "score" or ccfg.inference.static_cache
            warm_s = _timed(lambda: call(warm) if full else backend.generate(warm, short))
            outs: list[Any] = []
            seconds = _timed(lambda: outs.extend(call(timed)))
            produced = sum(o.new_tokens for o in outs)
            rows.append({"case": case.name, "what": case.what, "mode": case.mode, "batch_size": bs,
                         "samples": n, "prompt_tokens": round(prompt_tokens, 1), "new_tokens": new,
                         "seconds": round(seconds, 3), "samples_per_s": round(n / seconds, 3),
                         "new_tokens_per_s": round(produced / seconds, 1) if new else None,
                         "prompt_tokens_per_s": round(prompt_tokens * n / seconds, 1),
                         "warmup_s": round(warm_s, 2), "build_s": round(build_s, 2),
                         "peak_gib": _peak_gib(),
                         "min_new_tokens_held": all(o.new_tokens == new for o in outs) if new else None})
            print(json.dumps(rows[-1]), flush=True)
        # old / deepspeed: ~10^6 kernel events per batch, minutes to summarise; the hsd paths only
        if args.profile and cuda and case.name not in ("old", "deepspeed"):
            rows[-1]["profile"] = _profile(lambda: call(timed[:bs]))
    finally:
        del backend
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return rows


def _profile(fn: Any) -> str:
    """Where one batch's time goes (torch.profiler, top CUDA ops)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        _sync()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """ratio = samples/s over the old setting's at the same output length (score: at the shortest);
    workload rows: over the same workload's static-batch row of the same call (``ratio_vs_static``)."""
    static = {r["workload"]: r["samples_per_s"] for r in rows if r.get("workload") and r["case"].endswith("_static")}
    for r in rows:
        if r.get("workload"):
            ref = static.get(r["workload"])
            r["ratio_vs_static"] = round(r["samples_per_s"] / ref, 2) if ref else None
            r["ratio_vs_old"] = None
    rows = [r for r in rows if not r.get("workload")]
    old = {r["new_tokens"]: r["samples_per_s"] for r in rows if r["case"] == "old"}
    for r in rows:
        ref = old.get(r["new_tokens"], old.get(min(old), None) if old else None)
        r["ratio_vs_old"] = round(r["samples_per_s"] / ref, 2) if ref else None


def environment(args: Any) -> dict[str, Any]:
    import torch
    import transformers

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return {"device": dev, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "model": args.model,
            "command": "hsd bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def markdown(env: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    head = ("| case | prompt tokens | new tokens | samples/s | new tok/s | prompt tok/s | peak GiB | x old "
            "| x static | warm-up s |\n|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['what']} | {r['prompt_tokens']} | {r['new_tokens'] or '— (score)'} | {r['samples_per_s']} | "
        f"{r['new_tokens_per_s'] or '—'} | {r['prompt_tokens_per_s']} | {r['peak_gib']} | "
        f"{r.get('ratio_vs_old') or '—'} | {r.get('ratio_vs_static') or '—'} | {r['warmup_s']} |\n" for r in rows)
    prompt = rows[0]["prompt_tokens"] if rows else "?"
    return (f"{MD_BEGIN}\n**{env['device']}**, torch {env['torch']}, transformers {env['transformers']}, "
            f"model `{env['model']}` (random bf16 weights), prompt ≈ {prompt} tokens, {env['date']}. "
            f"Command: `{env['command']}`\n\n{head}{body}{MD_END}")


def write_markdown(path: Path, block: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    if MD_BEGIN in text and MD_END in text:
        text = text[: text.index(MD_BEGIN)] + block + text[text.index(MD_END) + len(MD_END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def _write_json(path: Path, env: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    from hsd.runs import atomic_write_text

    atomic_write_text(path, json.dumps({"environment": env, "results": rows}, indent=2) + "\n")


def _tokenizer(path: str) -> Any:
    """A tokenizer directory to render prompts with instead of the model's (e.g. gpt-oss's own
    o200k_harmony for ``random:`` models, whose ids fit the 201,088-entry vocabulary)."""
    from transformers import AutoTokenizer

    from hsd.models.loader import left_padded

    return left_padded(AutoTokenizer.from_pretrained(path))


def main(args: Any) -> int:
    import torch

    from hsd.models.loader import load_tokenizer

    if not torch.cuda.is_available() and not args.allow_cpu:
        raise HsdError("hsd bench measures GPU speed and needs CUDA; pass --allow-cpu for a smoke run (tests)")
    args.device = "cuda:0" if torch.cuda.is_available() else "cpu"
    base = from_dict({"model": {"name_or_path": args.model}, "inference": {"progress": False}})
    tokenizer = _tokenizer(args.tokenizer) if args.tokenizer else load_tokenizer(base.model)
    known = {c.name: c for c in cases(args.batch_size, args.old_batch_size, args.slots)}
    wanted = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise HsdError(f"hsd bench --cases: unknown {', '.join(unknown)}; valid: {', '.join(known)}")
    rows: list[dict[str, Any]] = []
    for case in (known[name] for name in wanted):  # in the order given
        try:
            rows.extend((run_workload if case.workload else run_case)(base, case, tokenizer, args))
        except Exception as exc:  # noqa: BLE001 - record it, measure the other cases
            if not args.keep_going:
                raise
            rows.append({"case": case.name, "what": case.what, "error": f"{type(exc).__name__}: {exc}"})
            print(f"case {case.name} failed: {exc}", file=sys.stderr, flush=True)
        _write_json(Path(args.out), environment(args), rows)  # after every case: a cut-off run keeps its numbers
    good = [r for r in rows if "error" not in r]
    add_ratios(good)
    env = environment(args)
    _write_json(Path(args.out), env, rows)
    if args.markdown:
        write_markdown(Path(args.markdown), markdown(env, good))
    print(markdown(env, good))
    return 0
