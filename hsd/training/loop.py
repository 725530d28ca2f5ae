"""The training loop: setup, one optimizer step, hold-out loss, checkpoints, the step log.

Every rank runs the same number of steps and eval batches (ZeRO-3 gathers parameters in
collectives, so a rank that skips a forward pass hangs the others); the per-step stats and
the preemption flag travel in one all-reduce.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Optional

from hsd.config import Config
from hsd.distributed import gather
from hsd.errors import TrainingDataError
from hsd.phases import Phases
from hsd.progress import Progress
from hsd.runs import Status, atomic_write_text, iter_jsonl, update_manifest
from hsd.training import checkpoint
from hsd.training.dataset import IGNORE, StepPlan, TokenizedSet, collate, eval_batches, read_chat_jsonl, tokenize_rows
from hsd.training.schedule import lr_at



@dataclasses.dataclass
class TrainState:
    """Everything besides model/optimizer/RNG that a resume needs (saved with each checkpoint)."""

    step: int = 0
    best_eval_loss: Optional[float] = None
    best_step: Optional[int] = None
    evals_since_best: int = 0
    tokens: int = 0  # non-padding tokens trained on, all ranks
    samples: int = 0
    train_time_s: float = 0.0  # time inside training steps (not eval, not checkpointing)
    # The same without each attempt's first step, which also pays for CUDA warm-up and
    # torch.compile (tens of seconds on the H100): the rate a long run settles at.
    steady_tokens: int = 0
    steady_time_s: float = 0.0
    last_eval_loss: Optional[float] = None
    world_size: int = 1
    resumed_at: tuple[int, ...] = ()  # steps this run was resumed at


@dataclasses.dataclass
class Session:
    engine: Any
    optimizer: Any
    train: TokenizedSet
    eval: TokenizedSet
    plan: StepPlan
    total_steps: int
    pad_id: int
    zero3_leaves: tuple[str, ...] = ()  # module classes DeepSpeed gathers whole (set_zero3_leaves)
    loaded_elements_per_rank: tuple[int, ...] = ()


def answer_loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """(summed fp32 cross-entropy, token count) over the labelled positions, shifted as in HF causal LMs.

    Only positions that predict a label go through ``lm_head``: the full-vocabulary logits of
    every position (4 x 1,024 x 201,088 in fp32 = 3.1 GiB at micro-batch 4) are what ran the
    GPU out of memory, and the labels cover only the answer. ``logits_to_keep`` keeps the same
    positions in every row, so it keeps their union over the rows; a kept position a row does
    not label is dropped before the upcast. The projection runs inside the model's forward, so
    a ``modules_to_save`` lm_head gets its gradients and ZeRO-3 gathers it as usual.
    """
    import torch.nn.functional as F

    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    keep = (targets != IGNORE).any(0).nonzero().squeeze(1)
    device = batch["input_ids"].device
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=keep.to(device)).logits
    targets = targets[:, keep].to(logits.device)
    labelled = targets != IGNORE
    loss = F.cross_entropy(logits[labelled].float(), targets[labelled], reduction="sum")
    return loss, labelled.sum()


def _load_sets(cfg: Config, data_dir: Path, tokenizer: Any) -> tuple[TokenizedSet, TokenizedSet]:
    sets = []
    for part in ("train", "eval"):
        path = data_dir / cfg.train.format / f"{part}.jsonl"
        rows = read_chat_jsonl(path)
        sets.append(tokenize_rows(rows, tokenizer, cfg.train.max_length, cfg.train.on_too_long, path))
    return sets[0], sets[1]


def setup(accelerator: Any, cfg: Config, data_dir: Path, recompute: int | bool, phases: Phases) -> Session:
    """Tokenizer, data, model (``recompute``: which decoder layers recompute their activations in
    the backward, as :func:`hsd.training.lora.load_base` takes it), LoRA, optimizer, DeepSpeed
    engine; each timed into ``phases``."""
    import torch

    from hsd.models.loader import load_tokenizer
    from hsd.training.accel import set_zero3_leaves
    from hsd.training.lora import apply_lora, load_base

    with phases("data"):  # tokenizer, tokenized rows
        tokenizer = load_tokenizer(cfg.model)
        train_set, eval_set = _load_sets(cfg, data_dir, tokenizer)  # bad data fails before the model loads
    with phases("model"):  # build or load (partitioned under ZeRO-3), LoRA
        model = load_base(cfg.model, recompute)
        # Parameter elements this rank holds as loaded: about 1/world each when ZeRO-3 partitioned
        # the model while it was built, all of them when it was built whole.
        loaded = tuple(gather(sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()
                                  for p in model.parameters())))
        model = apply_lora(model, cfg.train.lora, cfg.train.seed)
    # from_pretrained returns a model in eval mode, where transformers skips gradient
    # checkpointing and peft skips LoRA dropout — silently. The engine must train in train mode.
    model.train()
    leaves = set_zero3_leaves(model, accelerator.state.deepspeed_plugin.deepspeed_config,
                              cfg.train.zero3_moe_leaves)  # before DeepSpeed installs its hooks
    params = [p for p in model.parameters() if p.requires_grad]  # frozen weights: no optimizer state, no gradients
    optimizer = torch.optim.AdamW(params, lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay)
    with phases("engine"):  # DeepSpeed's engine and optimizer (ZeRO-3: its hooks)
        engine, optimizer = accelerator.prepare(model, optimizer)
    t = cfg.train
    plan = StepPlan(len(train_set.examples), accelerator.num_processes, accelerator.process_index,
                    t.micro_batch_size, t.grad_accum, t.seed)
    if plan.steps_per_epoch == 0:
        raise TrainingDataError(
            f"{len(train_set.examples)} training rows are fewer than one global batch "
            f"({plan.world_size} ranks x micro_batch_size {t.micro_batch_size} x grad_accum {t.grad_accum}); "
            "lower the batch settings or train on more rows"
        )
    total = t.max_steps or max(1, round(t.epochs * plan.steps_per_epoch))
    return Session(engine, optimizer, train_set, eval_set, plan, total, tokenizer.pad_token_id, tuple(leaves), loaded)


def _train_step(accelerator: Any, s: Session, cfg: Config, step: int, stop: bool) -> dict[str, Any]:
    """One optimizer step; returns the step's log entry and whether any rank wants to stop."""
    import torch

    lr = lr_at(cfg.train, step, s.total_steps)
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    stats = torch.zeros(4, dtype=torch.float64)  # loss sum over micro-batches, micro-batches, tokens, stop
    for indices in s.plan.micro_batches(step):
        batch = collate([s.train.examples[i] for i in indices], s.pad_id)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.accumulate(s.engine):
            loss_sum, count = answer_loss_sum(s.engine, batch)
            loss = loss_sum / count  # the mean over the micro-batch's answer tokens, as HF's loss
            accelerator.backward(loss)
        stats += torch.tensor([loss.item(), 1.0, float(batch["attention_mask"].sum()), 0.0], dtype=torch.float64)
    stats[3] = float(stop)
    stats = accelerator.reduce(stats.to(accelerator.device), reduction="sum").cpu()
    grad_norm = s.engine.get_global_grad_norm()
    return {"step": step + 1, "loss": stats[0].item() / stats[1].item(), "lr": lr,
            "grad_norm": None if grad_norm is None else float(grad_norm),
            "tokens": int(stats[2].item()), "stop": bool(stats[3].item() > 0)}


def evaluate(accelerator: Any, s: Session, batch_size: int) -> float:
    """Token-weighted mean loss on the hold-out (answer tokens), over all ranks."""
    import torch

    s.engine.eval()
    total = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for indices, dummy in eval_batches(len(s.eval.examples), accelerator.num_processes,
                                           accelerator.process_index, batch_size):
            batch = collate([s.eval.examples[i] for i in indices], s.pad_id, dummy)
            loss, count = answer_loss_sum(s.engine, {k: v.to(accelerator.device) for k, v in batch.items()})
            total += torch.tensor([loss.item(), count.item()], dtype=torch.float64)
    s.engine.train()
    total = accelerator.reduce(total.to(accelerator.device), reduction="sum").cpu()
    return total[0].item() / total[1].item()


# train_log.jsonl key -> tracker scalar name: the trackers get exactly the file's numbers.
TRACKED = {"loss": "train/loss", "lr": "train/learning_rate", "grad_norm": "train/grad_norm",
           "tokens_per_s": "train/tokens_per_s", "peak_memory_gib": "train/peak_memory_gib", "epoch": "train/epoch",
           "eval_loss": "eval/loss", "best_eval_loss": "eval/best_loss"}


class TrainLog:
    """``train_log.jsonl`` on rank 0, and the same numbers to the trackers (:mod:`hsd.tracking`);
    a resume first drops lines past the checkpoint's step."""

    def __init__(self, path: Path, main: bool, resume_step: int, tracking: Optional[Any] = None) -> None:
        self.path, self.main, self.tracking = path, main, tracking
        if main:
            kept = [e for e in iter_jsonl(path) if e["step"] <= resume_step] if resume_step else []
            atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in kept))
            self._fh = open(path, "a", encoding="utf-8")

    def write(self, entry: dict[str, Any]) -> None:
        if self.main:
            self._fh.write(json.dumps(entry) + "\n")
            self._fh.flush()
            if self.tracking is not None:
                self.tracking.log({TRACKED[k]: v for k, v in entry.items() if k in TRACKED}, step=entry["step"])

    def close(self) -> None:
        if self.main:
            self._fh.close()
            if self.tracking is not None:
                self.tracking.finish()


def _maybe_evaluate(accelerator: Any, s: Session, cfg: Config, state: TrainState, log: TrainLog) -> bool:
    """Eval at every ``eval_every`` steps and the last; True when early stopping says stop."""
    if state.step % cfg.train.eval_every and state.step != s.total_steps:
        return False
    loss = evaluate(accelerator, s, cfg.train.micro_batch_size)
    if state.best_eval_loss is None or loss < state.best_eval_loss - cfg.train.early_stopping_min_delta:
        state.best_eval_loss, state.best_step, state.evals_since_best = loss, state.step, 0
    else:
        state.evals_since_best += 1
    state.last_eval_loss = loss
    log.write({"step": state.step, "eval_loss": loss, "best_eval_loss": state.best_eval_loss})
    patience = cfg.train.early_stopping_patience
    return patience is not None and state.evals_since_best >= patience


def _progress(accelerator: Any, s: Session, cfg: Config, state: TrainState) -> Optional[Progress]:
    """Rank 0's progress line (``report.progress_every_s``): step, rate, ETA, loss, tokens/s."""
    if not accelerator.is_main_process:
        return None
    return Progress("train", s.total_steps, cfg.report.progress_every_s, lambda line: print(line, flush=True),
                    unit="steps", start_at=state.step)


def train_loop(accelerator: Any, s: Session, cfg: Config, state: TrainState, log: TrainLog, run: Path,
               phases: Optional[Phases] = None) -> str:
    """Train until done; returns how it ended: completed | early_stopped | stopped. The attempt's
    first step (compiling the fused kernels, the allocator's warm-up) is ``phases``' ``first_step``."""
    t = cfg.train
    first_step = state.step
    progress = _progress(accelerator, s, cfg, state)
    with checkpoint.PreemptionGuard() as guard:
        while state.step < s.total_steps:
            start = time.perf_counter()
            entry = _train_step(accelerator, s, cfg, state.step, guard.requested)
            elapsed, tokens = time.perf_counter() - start, entry.pop("tokens")
            if state.step > first_step:
                state.steady_time_s += elapsed
                state.steady_tokens += tokens
            elif phases is not None:
                phases.add("first_step", elapsed)
            state.step += 1
            state.train_time_s += elapsed
            state.tokens += tokens
            state.samples += s.plan.global_batch
            preempted = entry.pop("stop")
            entry.update(epoch=state.step / s.plan.steps_per_epoch, train_time_s=state.train_time_s,
                         tokens_per_s=round(tokens / elapsed, 2), peak_memory_gib=peak_memory_gib(accelerator))
            log.write(entry)
            early = _maybe_evaluate(accelerator, s, cfg, state, log)
            if progress is not None:
                evaluated = "-" if state.last_eval_loss is None else f"{state.last_eval_loss:.4f}"
                progress.update(state.step, f"loss {entry['loss']:.4f}  lr {entry['lr']:.3g}  "
                                f"tokens/s {entry['tokens_per_s']:.0f}  eval_loss {evaluated}")
            stopping = t.stop_after_steps is not None and state.step >= t.stop_after_steps
            if preempted or stopping or early or state.step % t.save_every == 0:
                checkpoint.save(accelerator, run, state.step, dataclasses.asdict(state), t.keep_checkpoints)
            if preempted:
                if accelerator.is_main_process:
                    update_manifest(run, status=Status.PREEMPTED.value, steps=state.step)
                guard.hand_over(state.step)
            if early:
                return "early_stopped"
            if stopping and state.step < s.total_steps:
                return "stopped"
    return "completed"


def peak_memory_gib(accelerator: Any) -> float:
    """Max over ranks of CUDA max_memory_allocated, or of the process's peak RSS on CPU."""
    import resource

    import torch

    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    value = torch.tensor([peak], dtype=torch.float64, device=accelerator.device)
    return round(accelerator.reduce(value, reduction="max").item(), 3)
