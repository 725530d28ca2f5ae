"""``python -m benchmarks.bench --out BENCHMARKS.json``: inference speed on the full-size gpt-oss-20b.

(``make bench`` runs it, from the repository root: the harness is not part of the installed
package.) Builds ``random:gpt-oss-20b`` (random bf16 weights, built on the GPU,
hsd.models.fullsize) and measures side by side, in one process, through the real backend
(``HFBackend.generate`` / ``.score``, the functions ``hsd validate`` calls per batch, and the
benchmark hooks of :class:`hsd.inference.base.Backend`: ``reserve``, ``refill_report``):

* ``old``      — the old pipeline's setting: HF generate, batch 4, eager attention and experts;
* ``generate`` — hsd's default generate path (sink-aware SDPA, grouped_mm experts, static
  cache + CUDA-graph decode) at ``--batch-size``;
* ``score``    — score mode on the same prompts (no shared prefix: every token is new);
* ``score_rich`` — score mode on prompts shaped like the rich template (a shared system +
  few-shot prefix, a per-sample tail): the prefix KV is computed once.

Each generate case runs at every ``--new-tokens`` (forced with min_new_tokens). Reported per
case: samples/s, new tokens/s, peak GPU memory, ratio to ``old`` in samples/s. Each backend is
built, warmed up (compilation excluded, its time reported), timed, and freed before the next.
Results go to the JSON file and a table between markers in BENCHMARKS.md (benchmarks.report);
the cases and their prompts are in benchmarks.cases.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

from benchmarks.cases import Case, cases, make_prompts, workload_prompts
from benchmarks.report import add_ratios, environment, markdown, write_json, write_markdown
from hsd.config import Config, from_dict, replace
from hsd.errors import HsdError


def run_workload(cfg: Config, case: Case, tokenizer: Any, args: Any) -> list[dict[str, Any]]:
    """The workload validate runs: hsd's prompts, each row stopping at its drawn length.

    Refill (``inference.refill``, the default): rows end at their own length (a forced stop) and
    their slots take the next prompts. Static batches (the path before refill): a batch runs until
    its longest row, so each batch decodes max(its lengths) steps; samples/s and new tokens/s
    count each row's drawn length only. Both caches are sized for the longest length up front
    (``Backend.reserve``) so the warm-up captures the graph the timed run replays.
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
    backend.reserve(cap)
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
        report = backend.refill_report()
        if report is not None:
            bs = row["slots"] = report.slots
            del row["batch_size"]
            row["shared_prefix_tokens"] = report.shared_prefix_tokens
            st = report.stats  # where the time went: admits (prefill) vs decode steps, slot use
            row["refill"] = {**st, "admit_s": round(st["admit_s"], 2),
                             "slot_use": round(st["busy_row_steps"] / max(1, st["steps"] * bs), 3),
                             "ms_per_step": round(1000 * (seconds - st["admit_s"]) / max(1, st["steps"]), 2)}
        print(json.dumps(row), flush=True)
        if args.profile and torch.cuda.is_available():
            # one fill of the slots, outputs capped at 64 tokens: the kernel mix, in a table that summarises in seconds
            row["profile"] = _profile(lambda: run(list(range(min(n, bs))), [min(64, x) for x in lengths[:bs]]))
        return [row]
    finally:
        backend = None  # the model freed before the next case's is built
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
        backend = None  # the model freed before the next case's is built
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


def _tokenizer(path: str) -> Any:
    """A tokenizer directory to render prompts with instead of the model's (e.g. gpt-oss's own
    o200k_harmony for ``random:`` models, whose ids fit the 201,088-entry vocabulary)."""
    from transformers import AutoTokenizer

    from hsd.models.loader import left_padded

    return left_padded(AutoTokenizer.from_pretrained(path))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="BENCHMARKS.json", help="results JSON")
    p.add_argument("--markdown", default="BENCHMARKS.md", help="Markdown file whose bench table is replaced ('' to skip)")
    p.add_argument("--model", default="random:gpt-oss-20b", help="model.name_or_path (random:<arch> or a model dir)")
    p.add_argument("--cases", default="old,generate,score,score_rich,deepspeed", help="comma-separated cases")
    p.add_argument("--prompt-tokens", type=int, default=1024)
    p.add_argument("--new-tokens", type=int, nargs="+", default=[128, 512], help="forced output lengths")
    p.add_argument("--batch-size", type=int, default=64, help="batch size of the hsd cases")
    p.add_argument("--old-batch-size", type=int, default=4, help="batch size of the old setting")
    p.add_argument("--batches", type=int, default=2, help="timed batches per case and length")
    p.add_argument("--old-batches", type=int, default=1, help="timed batches of the (slow) old setting")
    p.add_argument("--profile", action="store_true", help="add a torch.profiler table of one batch per case")
    p.add_argument("--keep-going", action="store_true", help="record a failing case and measure the others")
    p.add_argument("--allow-cpu", action="store_true", help="run without CUDA (smoke test of the harness)")
    p.add_argument("--slots", type=int, default=None,
                   help="rows decoding at once in the refill cases (rich, simple; default: as many as fit, up to 512)")
    p.add_argument("--workload-samples", type=int, default=512, help="test-split samples of the rich/simple cases")
    p.add_argument("--data-dir", default=None, help="dataset directory of the rich/simple cases (default: data.dir)")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory for the prompts (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rich/simple cases' drawn output lengths")
    p.add_argument("--workload-cap", type=int, default=0, help="cap the drawn output lengths (0: none; CPU smoke tests)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Parse the flags (``sys.argv`` when ``argv`` is None) and run the cases; 2 on a usage error."""
    args = parser().parse_args(argv)
    try:
        return run(args)
    except HsdError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


def run(args: Any) -> int:
    import torch

    from hsd.models.loader import load_tokenizer

    if not torch.cuda.is_available() and not args.allow_cpu:
        raise HsdError("benchmarks.bench measures GPU speed and needs CUDA; pass --allow-cpu for a smoke run (tests)")
    args.device = "cuda:0" if torch.cuda.is_available() else "cpu"
    base = from_dict({"model": {"name_or_path": args.model}, "inference": {"progress": False}})
    tokenizer = _tokenizer(args.tokenizer) if args.tokenizer else load_tokenizer(base.model)
    known = {c.name: c for c in cases(args.batch_size, args.old_batch_size, args.slots)}
    wanted = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise HsdError(f"benchmarks.bench --cases: unknown {', '.join(unknown)}; valid: {', '.join(known)}")
    rows: list[dict[str, Any]] = []
    for case in (known[name] for name in wanted):  # in the order given
        try:
            rows.extend((run_workload if case.workload else run_case)(base, case, tokenizer, args))
        except Exception as exc:  # noqa: BLE001 - record it, measure the other cases
            if not args.keep_going:
                raise
            rows.append({"case": case.name, "what": case.what, "error": f"{type(exc).__name__}: {exc}"})
            print(f"case {case.name} failed: {exc}", file=sys.stderr, flush=True)
        write_json(Path(args.out), environment(args), rows)  # after every case: a cut-off run keeps its numbers
    good = [r for r in rows if "error" not in r]
    add_ratios(good)
    env = environment(args)
    write_json(Path(args.out), env, rows)
    if args.markdown:
        write_markdown(Path(args.markdown), markdown(env, good))
    print(markdown(env, good))
    return 0


if __name__ == "__main__":
    sys.exit(main())
