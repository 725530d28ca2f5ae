"""What ``python -m benchmarks.bench`` writes: the JSON of every row and the table in BENCHMARKS.md."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

MD_BEGIN, MD_END = "<!-- hsd-bench:begin -->", "<!-- hsd-bench:end -->"  # the table's place in BENCHMARKS.md


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
            "command": " ".join(["python -m benchmarks.bench", *sys.argv[1:]]),
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


def write_json(path: Path, env: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    from hsd.runs import atomic_write_text

    atomic_write_text(path, json.dumps({"environment": env, "results": rows}, indent=2) + "\n")
