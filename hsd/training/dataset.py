"""Fine-tuning rows -> token ids with the loss on the answer tokens only.

A row of the chat JSONL that ``hsd ftdata`` writes holds ``prompt`` (the text exactly as the
inference path renders it, generation header ``<|start|>assistant`` included) and
``completion`` (``<|channel|>final<|message|>{json}<|return|>``). Training on prompt +
completion with labels on the completion only teaches the model to answer right after the
generation prompt it sees at inference. A row with only ``messages`` (any chat JSONL) is
rendered with the tokenizer's chat template the same way: prompt = the messages before the
last with the generation prompt, completion = what the full conversation adds to it.

The order of the data is a pure function of (seed, epoch, step), so a resumed run reads
exactly the batches the uninterrupted run would have read, whatever happened in between.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from hsd import textio
from hsd.errors import TrainingDataError

IGNORE = -100  # label of tokens without loss (prompt, padding)


@dataclass(frozen=True)
class Example:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE on prompt tokens


@dataclass(frozen=True)
class TokenizedSet:
    examples: tuple[Example, ...]
    truncated: int  # rows whose prompt was cut from the left to fit max_length
    longest: int  # tokens of the longest row before truncation


def read_chat_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a chat JSONL file; errors name the file and line."""
    if not path.is_file():
        raise TrainingDataError(f"fine-tuning file not found: {path}; write it with: hsd ftdata --config F --out DIR")
    rows = []
    text = textio.read_text(path, error=TrainingDataError)  # a bad byte: file, line, column and the fix
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingDataError(f"{path} line {number}: not valid JSON ({exc.msg}); one JSON object per line") from None
        if not isinstance(row, dict):
            raise TrainingDataError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    if not rows:
        raise TrainingDataError(f"{path}: the file is empty (no training rows); re-run hsd ftdata or check the split")
    return [dict(row, _line=number) for number, row in rows]


def prompt_and_completion(row: dict[str, Any], tokenizer: Any, where: str) -> tuple[str, str]:
    """The (prompt, completion) text of one row; TrainingDataError when there is no answer."""
    messages = row.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise TrainingDataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
        last = messages[-1]
        if last.get("role") != "assistant" or not isinstance(last.get("content"), str) or not last["content"].strip():
            raise TrainingDataError(
                f"{where}: no assistant turn: the last message must have role 'assistant' and the answer as "
                f"its content (got role {last.get('role')!r}); the model can only learn from rows with an answer"
            )
    if "prompt" in row or "completion" in row:
        prompt, completion = row.get("prompt"), row.get("completion")
        if not isinstance(prompt, str) or not prompt:
            raise TrainingDataError(f"{where}: 'prompt' must be a non-empty string")
        if not isinstance(completion, str) or not completion.strip():
            raise TrainingDataError(f"{where}: no assistant answer: 'completion' is missing or empty")
        return prompt, completion
    if messages is None:
        raise TrainingDataError(f"{where}: a row needs 'messages' (chat turns ending with the assistant) or 'prompt' + 'completion'")
    return _render(messages, tokenizer, where)


def _render(messages: list[dict[str, Any]], tokenizer: Any, where: str) -> tuple[str, str]:
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise TrainingDataError(
            f"{where}: the chat template renders the conversation differently from its prompt, so the answer "
            "cannot be separated; write 'prompt' and 'completion' fields instead (hsd ftdata does)"
        )
    return prompt, full[len(prompt):]


def tokenize_rows(rows: Sequence[dict[str, Any]], tokenizer: Any, max_length: int, on_too_long: str,
                  path: Path) -> TokenizedSet:
    """Token ids with answer-only labels; rows over ``max_length`` truncated or refused."""
    examples, truncated, longest = [], 0, 0
    for row in rows:
        where = f"{path} line {row['_line']}"
        prompt, completion = prompt_and_completion(row, tokenizer, where)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        total = len(p_ids) + len(c_ids)
        longest = max(longest, total)
        if total > max_length:
            if on_too_long == "error" or len(c_ids) >= max_length:
                raise TrainingDataError(
                    f"{where}: {total} tokens (prompt {len(p_ids)} + answer {len(c_ids)}) exceed "
                    f"train.max_length={max_length}; raise train.max_length"
                    + (", or set train.on_too_long=truncate to cut the prompt from the left" if len(c_ids) < max_length else "")
                )
            p_ids = p_ids[total - max_length:]
            truncated += 1
        examples.append(Example(tuple(p_ids) + tuple(c_ids), (IGNORE,) * len(p_ids) + tuple(c_ids)))
    return TokenizedSet(tuple(examples), truncated, longest)


def collate(batch: Sequence[Example], pad_id: int, dummy: Sequence[bool] = ()) -> dict[str, Any]:
    """Right-padded tensors; ``dummy`` rows (padding of an uneven eval shard) carry no loss."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, example in enumerate(batch):
        n = len(example.input_ids)
        ids[i, :n] = torch.tensor(example.input_ids)
        mask[i, :n] = 1
        if not (dummy and dummy[i]):
            labels[i, :n] = torch.tensor(example.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass(frozen=True)
class StepPlan:
    """Which examples each rank reads at each optimizer step.

    Epoch ``e`` is a permutation seeded by (seed, e); its first ``steps_per_epoch`` global
    batches are used (the remainder, fewer than one global batch, is dropped so every rank
    runs the same number of steps: ZeRO-3 deadlocks otherwise).
    """

    n_examples: int
    world_size: int
    rank: int
    micro_batch_size: int
    grad_accum: int
    seed: int

    @property
    def global_batch(self) -> int:
        return self.world_size * self.micro_batch_size * self.grad_accum

    @property
    def steps_per_epoch(self) -> int:
        return self.n_examples // self.global_batch

    def micro_batches(self, step: int) -> list[list[int]]:
        """``grad_accum`` lists of example indices for this rank at global step ``step``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        order = _permutation(self.n_examples, self.seed, epoch)
        start = within * self.global_batch
        out = []
        for a in range(self.grad_accum):
            first = start + (a * self.world_size + self.rank) * self.micro_batch_size
            out.append(order[first:first + self.micro_batch_size])
        return out


def _permutation(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"hsd-train:{seed}:{epoch}").shuffle(order)
    return order


def eval_batches(n: int, world_size: int, rank: int, batch_size: int) -> list[tuple[list[int], list[bool]]]:
    """This rank's eval batches as (indices, is_dummy); every rank gets the same count.

    Rank r takes examples r, r+W, ...; a shorter shard is padded with dummy rows (no loss)
    because under ZeRO-3 every rank must run every forward pass.
    """
    per_rank = -(-n // world_size)
    mine: list[Optional[int]] = list(range(rank, n, world_size))
    mine += [None] * (per_rank - len(mine))
    batches = []
    for i in range(0, per_rank, batch_size):
        chunk = mine[i:i + batch_size]
        batches.append(([0 if j is None else j for j in chunk], [j is None for j in chunk]))
    return batches
