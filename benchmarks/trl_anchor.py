"""What a user would otherwise run: TRL's SFTTrainer + peft LoRA on the same model, rows, sequence
length and batch as ``hsd train``, timed the same way (issue 29's same-call anchor).

    python -m benchmarks.trl_anchor --data FTDATA --kernels transformers --steps 12 --out DIR

``FTDATA`` is ``hsd ftdata``'s output (the bench config's ``optimized`` rows). The rows are
tokenized by hsd's own training code (``hsd.training.dataset.tokenize_rows``: chat template,
prompt cut from the left to ``--max-length``, loss on the answer only), so both trainers see the
same token ids and the same loss mask; TRL gets them pre-tokenized with ``labels`` (-100 on the prompt).
``--kernels transformers`` is the gpt-oss fine-tuning cookbook's model (eager attention,
transformers' default experts); ``--kernels hsd`` is the model ``hsd train`` builds
(``hsd.training.lora.load_base``: hsd's attention, fused experts and norms), so the difference
between the two TRL runs is the kernels and the rest is the trainer. Prints one SUMMARY line and
writes ``trl_<kernels>.json`` (steady tokens/s over the steps after the first two, peak memory,
the loss of every step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

DEFAULT_TARGETS = "q_proj,k_proj,v_proj,o_proj"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="hsd ftdata output directory")
    p.add_argument("--format", default="optimized")
    p.add_argument("--model", default="random:gpt-oss-20b")
    p.add_argument("--kernels", choices=("transformers", "hsd"), default="transformers")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--r", type=int, default=32)
    p.add_argument("--alpha", type=int, default=64)
    p.add_argument("--targets", default=DEFAULT_TARGETS)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--schedule", choices=("trl", "hsd"), default="trl",
                   help="trl: TRL's linear warm-up from 0 and linear decay (the cookbook's); hsd: hsd train's "
                        "(hsd.training.schedule.lr_at with the bench config's cosine and 5%% warm-up), so the two "
                        "loss curves compare step by step")
    p.add_argument("--out", default="bench_train_out")
    return p.parse_args(argv)


def hsd_schedule(model: Any, peft_config: Any, args: argparse.Namespace) -> tuple[Any, tuple[Any, Any]]:
    """The LoRA model and (optimizer, scheduler) with hsd train's learning rate at every step:
    AdamW over the adapter's weights, ``hsd.training.schedule.lr_at`` as a LambdaLR."""
    import torch
    from peft import get_peft_model

    from hsd.config import TrainConfig
    from hsd.training.schedule import lr_at

    model = get_peft_model(model, peft_config)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, fused=torch.cuda.is_available())
    train = TrainConfig(learning_rate=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(train, step, args.steps) / args.lr)
    return model, (opt, sched)


def build_model(args: argparse.Namespace) -> Any:
    """The cookbook's model (eager attention, transformers' own experts choice) or the one hsd train builds."""
    import torch
    from transformers import AutoModelForCausalLM

    from hsd.config import ModelConfig
    from hsd.models.fullsize import PREFIX, build_random, harmony_tokenizer, is_random_spec

    if args.kernels == "hsd":
        from hsd.training.lora import load_base

        return load_base(ModelConfig(name_or_path=args.model), checkpointing=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if is_random_spec(args.model):
        model = build_random(args.model[len(PREFIX):], harmony_tokenizer(), device=device,
                             attn_implementation="eager", experts_implementation=None).train()
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16, attn_implementation="eager",
                                                     device_map={"": device})
    model.config.use_cache = False
    return model


def tokenized_dataset(args: argparse.Namespace, tokenizer: Any, rows_needed: int) -> Any:
    """Rows as TRL's collator takes them, in a ``datasets.Dataset`` built straight from an Arrow table
    with a fixed fingerprint (its dill hashing of the table fails with some pyarrow versions)."""
    import pyarrow as pa
    from datasets import Dataset

    from hsd.training.dataset import read_chat_jsonl, tokenize_rows

    path = Path(args.data) / args.format / "train.jsonl"
    rows = read_chat_jsonl(path)[:rows_needed]
    examples = tokenize_rows(rows, tokenizer, args.max_length, "truncate", path).examples
    rows = [{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in examples]  # IGNORE on the prompt
    return Dataset(pa.Table.from_pylist(rows), fingerprint=f"hsd-{args.format}-{args.max_length}-{len(rows)}")


def warmup(config_cls: Any, ratio: float) -> dict[str, float]:
    """transformers 5 folds ``warmup_ratio`` into ``warmup_steps`` (a float below 1 is a ratio)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    return {"warmup_ratio": ratio} if "warmup_ratio" in names else {"warmup_steps": ratio}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from hsd.models.loader import load_tokenizer
    from hsd.config import ModelConfig

    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    tokenizer = load_tokenizer(ModelConfig(name_or_path=args.model))
    tokenizer.padding_side = "right"
    data = tokenized_dataset(args, tokenizer, args.steps * args.micro_batch)
    model = build_model(args)
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    config = SFTConfig(
        output_dir=str(Path(args.out) / f"trl_{args.kernels}"), max_steps=args.steps,
        per_device_train_batch_size=args.micro_batch, gradient_accumulation_steps=1, learning_rate=args.lr,
        lr_scheduler_type="linear", weight_decay=0.0, **warmup(SFTConfig, 0.05), bf16=cuda, logging_steps=1,
        gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False},
        max_length=None, completion_only_loss=True, packing=False, report_to="none", save_strategy="no",
        dataloader_num_workers=0, seed=0, optim="adamw_torch_fused", remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},  # already tokenized by hsd's code, as hsd train sees it
    )
    peft_config = LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=0.05, bias="none",
                             target_modules=args.targets.split(","), task_type="CAUSAL_LM")
    if args.schedule == "hsd":
        model, optimizers = hsd_schedule(model, peft_config, args)
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                             optimizers=optimizers, callbacks=[Clock()])
    else:
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=[Clock()])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    tokens = [len(ids) for ids in data["input_ids"]]
    per_step = [sum(tokens[i * args.micro_batch:(i + 1) * args.micro_batch]) for i in range(args.steps)]
    steady = stamps[1:]  # after the first two steps (compile, allocator warm-up)
    result = {
        "kernels": args.kernels, "steps": args.steps, "micro_batch": args.micro_batch, "max_length": args.max_length,
        "whole_tokens_per_s": round(sum(per_step) / (stamps[-1] - start), 1),
        "steady_tokens_per_s": round(sum(per_step[2:]) / (steady[-1] - steady[0]), 1) if len(steady) > 1 else None,
        "median_step_s": round(statistics.median(b - a for a, b in zip(stamps, stamps[1:])), 4),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
        "lrs": [h.get("learning_rate") for h in trainer.state.log_history if "loss" in h],
        "schedule": args.schedule,
        "versions": {m.__name__: m.__version__ for m in (torch, __import__("trl"), __import__("peft"),
                                                           __import__("transformers"))},
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"trl_{args.kernels}.json").write_text(json.dumps(result, indent=1))
    print("SUMMARY", f"trl_{args.kernels}", "steady_tokens_per_s", result["steady_tokens_per_s"],
          "whole", result["whole_tokens_per_s"], "median_step_s", result["median_step_s"],
          "peak_GiB", result["peak_memory_gib"], flush=True)
    return result


if __name__ == "__main__":
    main()
