"""What ``python -m benchmarks.bench`` measures: its cases and the prompts they run.

Synthetic cases (``old``, ``generate``, ``score``, ``score_rich``, ``deepspeed``) run prompts of
random words at forced output lengths; the workload cases (``rich``, ``simple`` and their
``_static`` twins) run hsd's own prompts over the test split, each row stopping at a length drawn
from recorded gpt-oss answers (:mod:`benchmarks.bench_lengths`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional

from hsd.config import Config, replace

_WORDS = ("group", "people", "text", "language", "speech", "post", "comment", "community", "policy",
          "attack", "identity", "religion", "origin", "respect", "insult", "context", "example", "label")


@dataclass(frozen=True)
class Case:
    """One measured setting: config overrides on the bench's base config, and the prompts it runs."""

    name: str
    what: str  # the table's description
    mode: str  # generate | score
    overrides: dict[str, Any] = field(default_factory=dict)
    shared_prefix: bool = False  # score_rich: prompts share a long system + few-shot prefix
    shortest_only: bool = False  # measure only the shortest --new-tokens (slow cases)
    workload: Optional[str] = None  # rich | simple: hsd's own prompts, recorded output lengths (bench.run_workload)


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
    and an output length per prompt drawn from real gpt-oss answers (benchmarks.bench_lengths)."""
    from benchmarks.bench_lengths import RESPONSE_TOKENS
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
