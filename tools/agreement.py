"""hsd's fast decode path against transformers' own ``generate``, on a model that has learned the task.

    python -m tools.agreement --out results/agreement                 # one GPU, bf16, the whole test split
    python -m tools.agreement --out /tmp/agree --device cpu --max-samples 16 --train-steps 5   # toy scale

hsd's default generate path (refill loop, shared-prefix attention kernel, static cache, CUDA graphs) is
proven exact against plain decoding on CPU in fp32. In bf16 on a GPU every kernel rounds differently,
and on a model with random weights the argmax flips on any rounding, so agreement there means nothing.
This tool checks the path where it matters, in one process:

1. **A model that has learned the task.** The tiny model's gpt-oss architecture (``random:gpt-oss-tiny``:
   sliding + full attention with sinks, a mixture of experts) widened to ``--hidden-size`` (head_dim 64,
   the real model's), with gpt-oss's real tokenizer (o200k_harmony, :mod:`hsd.models.o200k`), random
   weights, then fine-tuned on the train split in the simple post-FT format by hsd's own code: ``hsd
   train``'s recipe (LoRA + the embeddings and output layer trained in full, Accelerate + DeepSpeed),
   then ``hsd merge``. ``--model DIR`` skips this and checks a model you already have.
2. **Both paths on the test split** (simple prompt, greedy, the same ``--max-new-tokens``, bf16 on
   CUDA): ``hsd validate``'s recipe with every default (hf backend, refill, prefix cache, CUDA graphs,
   hsd's attention and experts kernels), and ``model.generate`` of a model loaded by transformers
   with ``attn_implementation="eager"``, its default cache, prompts left-padded in batches of
   ``--reference-batch-size`` (1: one prompt at a time, no padding at all).
3. **The comparison** per sample: the parsed labels (the issue's bar: equal on >= 99% of samples),
   the responses' texts, and the first token where they diverge (both responses re-encoded with the
   same tokenizer). ``agreement.json`` and ``agreement.md`` in ``--out`` list every sample whose labels
   differ, with both responses.

Exit status: 0 when the bar is met; 1 when it is not, or when the model did not learn the task (one
label on more than ``--max-label-share`` of the reference's answers: the check would then be as weak
as on random weights); 2 on bad input. The summary is written in every case.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hsd.config import Config, load_config
from hsd.errors import HsdError

TOKENIZER = "o200k_harmony (gpt-oss's real tokenizer, rebuilt offline by hsd.models.o200k)"


@dataclass(frozen=True)
class Answer:
    """One path's answer to one sample."""

    text: str  # the new tokens decoded with special tokens kept
    label: str
    status: str
    stop_reason: Optional[str]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.agreement", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output directory (new or empty)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--model", default=None, help="a fine-tuned model directory to check (skips building and training)")
    p.add_argument("--hidden-size", type=int, default=256, help="width of the model built for the check (64: the tiny model's)")
    p.add_argument("--layers", type=int, default=2, help="layers of that model (sliding and full attention alternate)")
    p.add_argument("--train-steps", type=int, default=600)
    p.add_argument("--train-batch", type=int, default=32, help="micro batch size of the fine-tuning")
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--max-samples", default="all", help="test samples, stratified (default: all 1,009)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64, help="hsd validate's inference.batch_size")
    p.add_argument("--reference-batch-size", type=int, default=64, help="prompts per model.generate call (1: no padding)")
    p.add_argument("--max-label-share", type=float, default=0.95, help="fail when one label is more of the answers")
    p.add_argument("--bar", type=float, default=0.99, help="required share of samples whose labels agree")
    a = p.parse_args(argv)
    a.max_samples = a.max_samples if a.max_samples == "all" else int(a.max_samples)
    a.dtype = "bfloat16" if a.device == "cuda" else "float32"
    a.out = a.out.resolve()
    return a


def say(message: str, since: float) -> None:
    """A progress line on stderr: where the ~6 minutes go."""
    print(f"agreement [{time.perf_counter() - since:6.1f} s] {message}", file=sys.stderr, flush=True)


def base_config(a: argparse.Namespace, model: str) -> Config:
    """The settings both hsd stages share: the simple (post-FT) prompt, the test split, this device."""
    return load_config(None, [
        "experiment=agreement", f"results_dir={a.out}", f"model.name_or_path={model}", f"model.device={a.device}",
        "prompt.template=simple", "data.split=test", f"data.max_samples={a.max_samples}",
        f"inference.max_new_tokens={a.max_new_tokens}", "inference.temperature=0.0",
        f"inference.batch_size={a.batch_size}", "inference.progress=false",
        "train.format=simple", f"train.max_steps={max(a.train_steps, 1)}", f"train.micro_batch_size={a.train_batch}",
        f"train.learning_rate={a.learning_rate}", "train.holdout_fraction=0.02", "train.max_length=512",
        f"train.eval_every={max(a.train_steps // 4, 1)}", f"train.save_every={max(a.train_steps, 1)}",
        "train.warmup_ratio=0.05", "train.lora.modules_to_save=[embed_tokens,lm_head]",
    ])


def build_base(out: Path, hidden: int, layers: int, seed: int = 0) -> Path:
    """The tiny model's architecture at ``hidden`` x ``layers`` with random weights, saved with
    gpt-oss's tokenizer the way :func:`hsd.models.tiny.build_tiny` saves the tiny model."""
    import torch
    from transformers import GenerationConfig, GptOssForCausalLM

    from hsd.models import o200k
    from hsd.models.fullsize import harmony_tokenizer
    from hsd.models.tiny import build_config

    if hidden % 64:
        raise HsdError(f"--hidden-size {hidden}: must be a multiple of 64 (heads of 64 dimensions, as gpt-oss's)")
    tokenizer = harmony_tokenizer()
    config = build_config(tokenizer)
    config.hidden_size = config.intermediate_size = hidden
    config.head_dim, config.num_attention_heads, config.num_key_value_heads = 64, max(hidden // 64, 2), 2
    config.num_hidden_layers = layers
    config.layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    config.sliding_window = 128  # gpt-oss's; the simple prompts are longer, so the window does slide
    torch.manual_seed(seed)
    model = GptOssForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, pad_token_id=config.pad_token_id,
                                               eos_token_id=config.eos_token_id, do_sample=False)
    model.save_pretrained(out)
    o200k.save_tokenizer(tokenizer, out)
    return out


def fine_tune(cfg: Config, out: Path) -> tuple[Path, dict[str, Any]]:
    """``hsd train`` (LoRA, simple format) then ``hsd merge``: the merged model and the train manifest."""
    from hsd.recipes.train import ADAPTER
    from hsd.recipes.train import run as train
    from hsd.training.merge import merge

    run = train(cfg, run_dir=out / "train")
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    return merge(run / ADAPTER, out / "merged"), manifest


def fast_path(cfg: Config, out: Path) -> tuple[dict[str, Answer], dict[str, str], float]:
    """``hsd validate`` with its defaults: answers and prompt hashes by sample id, and its seconds."""
    from hsd.inference.store import read_records
    from hsd.recipes.validate import run as validate

    start = time.perf_counter()
    run = validate(cfg, run_dir=out / "fast")
    seconds = time.perf_counter() - start
    records = read_records(run)
    answers = {r.sample_id: Answer(r.raw_response, r.predicted_label, r.parse_status, r.stop_reason) for r in records}
    return answers, {r.sample_id: r.prompt_hash for r in records}, seconds


def reference(cfg: Config, a: argparse.Namespace) -> tuple[dict[str, Answer], dict[str, str], float, dict[str, Any]]:
    """transformers' ``model.generate``, eager attention, greedy: answers and prompt hashes by id."""
    import hashlib

    import torch
    from transformers import AutoModelForCausalLM

    from hsd.data import select_samples
    from hsd.inference.generation import stop_ids, to_output
    from hsd.models.loader import load_tokenizer
    from hsd.parsing import parse_response
    from hsd.prompts import Prompter

    samples = select_samples(cfg.data)
    tokenizer = load_tokenizer(cfg.model)  # left-padded
    prompter = Prompter.from_config(cfg, tokenizer, {s.id for s in samples})
    prompts = {s.id: prompter.render(s) for s in samples}
    model = AutoModelForCausalLM.from_pretrained(cfg.model.name_or_path, attn_implementation="eager",
                                                 dtype=getattr(torch, a.dtype)).to(a.device).eval()
    stops = stop_ids(tokenizer)
    lengths = {i: len(tokenizer(p, add_special_tokens=False)["input_ids"]) for i, p in prompts.items()}
    order = sorted(prompts, key=lambda i: (lengths[i], i))  # little padding within a batch
    answers: dict[str, Answer] = {}
    start = time.perf_counter()
    for at in range(0, len(order), a.reference_batch_size):
        ids = order[at: at + a.reference_batch_size]
        enc = tokenizer([prompts[i] for i in ids], return_tensors="pt", padding=True, add_special_tokens=False).to(a.device)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=a.max_new_tokens, do_sample=False, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
        for sid, row in zip(ids, out[:, enc["input_ids"].shape[1]:].tolist()):
            o = to_output(tokenizer, row, lengths[sid], stops)
            parsed = parse_response(o.text, stop_reason=o.stop_reason)
            answers[sid] = Answer(o.text, parsed.label, parsed.status, o.stop_reason)
    seconds = time.perf_counter() - start
    hashes = {i: hashlib.sha256(p.encode("utf-8")).hexdigest()[:16] for i, p in prompts.items()}
    setup = {"attn_implementation": model.config._attn_implementation, "dtype": a.dtype,
             "experts_implementation": getattr(model.config, "_experts_implementation", None),
             "batch_size": a.reference_batch_size, "padding": "left" if a.reference_batch_size > 1 else "none"}
    return answers, hashes, seconds, setup


def first_divergence(tokenizer: Any, x: str, y: str) -> Optional[int]:
    """The first token position where two responses differ (both encoded by ``tokenizer``), None if equal."""
    if x == y:
        return None
    a, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (x, y))
    for i, (p, q) in enumerate(zip(a, b)):
        if p != q:
            return i
    return min(len(a), len(b))


def compare(fast: dict[str, Answer], ref: dict[str, Answer], truth: dict[str, str], tokenizer: Any,
            bar: float) -> dict[str, Any]:
    """Per-sample agreement of two paths' answers (same ids); every label difference listed."""
    if set(fast) != set(ref):
        raise HsdError(f"the two paths answered different samples: {len(set(fast) ^ set(ref))} ids differ")
    ids = sorted(fast)
    diverge = {i: first_divergence(tokenizer, fast[i].text, ref[i].text) for i in ids}
    differ = [i for i in ids if fast[i].label != ref[i].label]
    agreed = len(ids) - len(differ)
    share = agreed / len(ids) if ids else float("nan")
    positions = sorted(p for p in diverge.values() if p is not None)
    return {
        "samples": len(ids), "labels_agree": agreed, "label_agreement": share, "bar": bar,
        "meets_bar": bool(ids) and share >= bar,
        "texts_identical": sum(p is None for p in diverge.values()),
        "first_divergence": {"samples": len(positions), "positions": dict(collections.Counter(positions)),
                             "median": positions[len(positions) // 2] if positions else None},
        "fast": _tally(fast, truth), "reference": _tally(ref, truth),
        "label_differences": [{"sample_id": i, "true_label": truth.get(i), "first_divergence": diverge[i],
                               "fast": fast[i].__dict__, "reference": ref[i].__dict__} for i in differ],
        "text_differences_same_label": [{"sample_id": i, "first_divergence": diverge[i]}
                                        for i in ids if diverge[i] is not None and i not in set(differ)],
    }


def _tally(answers: dict[str, Answer], truth: dict[str, str]) -> dict[str, Any]:
    labels = collections.Counter(a.label for a in answers.values())
    answered = [i for i, a in answers.items() if a.label in ("hate", "normal")]
    correct = sum(answers[i].label == truth.get(i) for i in answered)
    return {"labels": dict(labels), "statuses": dict(collections.Counter(a.status for a in answers.values())),
            "accuracy_of_answered": correct / len(answered) if answered else None,
            "largest_label_share": max(labels.values()) / len(answers) if answers else None}


def markdown(summary: dict[str, Any]) -> str:
    """The summary a person reads: setup, agreement, where texts diverge, every label difference."""
    c, env = summary["comparison"], summary["environment"]
    lines = [
        "# Fast path vs transformers generate", "",
        f"{env['device']}, torch {env['torch']}, transformers {env['transformers']}, {summary['dtype']}; "
        f"model {summary['model']['path']} ({summary['model']['parameters']:,} parameters); tokenizer {TOKENIZER}.", "",
        f"**Labels agree on {c['labels_agree']} of {c['samples']} samples ({c['label_agreement']:.2%}); "
        f"bar {c['bar']:.0%}: {'met' if c['meets_bar'] else 'NOT met'}.** Identical responses: {c['texts_identical']}.", "",
        "| path | labels | statuses | accuracy (answered) | seconds |", "|---|---|---|---|---|",
    ]
    for name in ("fast", "reference"):
        t = c[name]
        acc = "n/a" if t["accuracy_of_answered"] is None else f"{t['accuracy_of_answered']:.3f}"
        lines.append(f"| {summary['paths'][name]} | {t['labels']} | {t['statuses']} | {acc} | {summary['seconds'][name]:.1f} |")
    lines += ["", f"First token where responses diverge (re-encoded): {c['first_divergence']['positions'] or 'none'}", ""]
    if c["label_differences"]:
        lines += ["## Samples whose labels differ", "", "| sample | true | fast | reference | first divergence |",
                  "|---|---|---|---|---|"]
        for d in c["label_differences"]:
            lines.append(f"| {d['sample_id']} | {d['true_label']} | {d['fast']['label']}: `{_cell(d['fast']['text'])}` "
                         f"| {d['reference']['label']}: `{_cell(d['reference']['text'])}` | {d['first_divergence']} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'").replace("\n", "\\n")[:300]


def environment(device: str) -> dict[str, str]:
    import torch
    import transformers

    name = torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else "CPU"
    return {"device": name, "torch": torch.__version__, "transformers": transformers.__version__}


def run(a: argparse.Namespace) -> dict[str, Any]:
    """The whole check; returns the summary (also written to ``a.out``)."""
    from hsd.config import replace
    from hsd.data import select_samples
    from hsd.models.loader import load_tokenizer

    _check_setup(a)
    started = time.perf_counter()
    model, train_manifest, tune_s = _model_to_check(a, started)
    cfg = replace(base_config(a, str(model)), **{"model.dtype": a.dtype})
    say(f"fast path: hsd validate on {a.device} in {a.dtype}", started)
    fast, fast_hashes, fast_s = fast_path(cfg, a.out)
    say("reference: transformers model.generate, eager attention", started)
    ref, ref_hashes, ref_s, ref_setup = reference(cfg, a)
    say("comparing", started)
    if fast_hashes != ref_hashes:
        raise HsdError("the two paths were given different prompts (prompt hashes differ): a bug in this tool")
    truth = {s.id: s.label for s in select_samples(cfg.data)}
    summary = {
        "command": "python -m tools.agreement " + " ".join(sys.argv[1:]), "environment": environment(a.device),
        "dtype": a.dtype, "max_new_tokens": a.max_new_tokens, "tokenizer": TOKENIZER,
        "model": _model_facts(model, train_manifest),
        "paths": {"fast": "hsd validate (hf backend, refill, prefix cache, static cache, CUDA graphs on CUDA)",
                  "reference": f"transformers model.generate, eager attention, greedy ({ref_setup['padding']} padding)"},
        "reference_setup": ref_setup, "seconds": {"build_and_fine_tune": tune_s, "fast": fast_s, "reference": ref_s,
                                                "total": time.perf_counter() - started},
        "comparison": compare(fast, ref, truth, load_tokenizer(cfg.model), a.bar),
    }
    (a.out / "agreement.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (a.out / "agreement.md").write_text(markdown(summary), encoding="utf-8")
    return summary


def _check_setup(a: argparse.Namespace) -> None:
    """Refuse a used output directory or a missing GPU before anything is built."""
    if a.out.exists() and any(a.out.iterdir()):
        raise HsdError(f"--out {a.out} exists and is not empty; choose a new directory")
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise HsdError("--device cuda but torch sees no GPU; use --device cpu for a toy run")
    a.out.mkdir(parents=True, exist_ok=True)


def _model_to_check(a: argparse.Namespace, started: float) -> tuple[Path, Optional[dict[str, Any]], float]:
    """``--model``, else the model built and fine-tuned here: its path, the train manifest, seconds."""
    if a.model:
        return Path(a.model).resolve(), None, 0.0
    say(f"building the model (hidden {a.hidden_size}, {a.layers} layers, random weights)", started)
    base = build_base(a.out / "base-model", a.hidden_size, a.layers)
    if a.train_steps <= 0:
        return base, None, time.perf_counter() - started
    say(f"fine-tuning: hsd train ({a.train_steps} steps of {a.train_batch}), then hsd merge", started)
    model, manifest = fine_tune(base_config(a, str(base)), a.out)
    return model, manifest, time.perf_counter() - started


def _model_facts(model: Path, train_manifest: Optional[dict[str, Any]]) -> dict[str, Any]:
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    keys = ("hidden_size", "num_hidden_layers", "num_local_experts", "head_dim", "sliding_window")
    facts: dict[str, Any] = {"path": str(model), **{k: config.get(k) for k in keys}}
    facts["parameters"] = _parameters(model)
    if train_manifest:
        facts["fine_tuning"] = {k: train_manifest.get(k) for k in (
            "steps", "final_eval_loss", "best_eval_loss", "train_time_s", "train_rows", "zero_stage")}
    return facts


def _parameters(model: Path) -> int:
    import math

    import safetensors

    total = 0
    for f in model.glob("*.safetensors"):
        with safetensors.safe_open(str(f), "np") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return total


def verdict(summary: dict[str, Any], max_label_share: float) -> list[str]:
    """Why the check failed ([] when it passed)."""
    c, problems = summary["comparison"], []
    for name in ("reference", "fast"):
        share = c[name]["largest_label_share"]
        if share is not None and share > max_label_share:
            problems.append(f"the model did not learn the task: one label is {share:.1%} of the {name} path's answers "
                            f"({c[name]['labels']}; limit {max_label_share:.0%}): train longer (--train-steps)")
            break
    if not c["meets_bar"]:
        problems.append(f"labels agree on {c['label_agreement']:.2%} of samples, below the bar of {c['bar']:.0%}")
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    a = parse_args(argv)
    try:
        summary = run(a)
    except HsdError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(markdown(summary))
    problems = verdict(summary, a.max_label_share)
    for p in problems:
        print(f"error: {p}", file=sys.stderr, flush=True)
    print(f"written: {a.out / 'agreement.json'}, {a.out / 'agreement.md'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
