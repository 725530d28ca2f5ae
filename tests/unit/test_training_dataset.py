"""hsd.training.dataset / schedule / accel: answer-only labels, bad input, data order, LR, DeepSpeed JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hsd.config import ConfigError, load_config
from hsd.errors import TrainingDataError
from hsd.training.accel import load_ds_config, resolve_ds_config
from hsd.training.dataset import IGNORE, StepPlan, collate, eval_batches, read_chat_jsonl, tokenize_rows
from hsd.training.schedule import lr_at

ANSWER = '<|channel|>final<|message|>{"classification": "hate"}<|return|>'


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _row(text: str = "some post", completion: str = ANSWER) -> dict:
    return {"prompt": f"<|start|>user<|message|>{text}<|end|><|start|>assistant", "completion": completion}


def test_labels_cover_the_answer_only(tmp_path, tokenizer):
    path = _write(tmp_path / "t.jsonl", [_row()])
    ex = tokenize_rows(read_chat_jsonl(path), tokenizer, 512, "error", path).examples[0]
    answer_ids = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    n_prompt = len(ex.input_ids) - len(answer_ids)
    assert list(ex.labels[:n_prompt]) == [IGNORE] * n_prompt
    assert list(ex.labels[n_prompt:]) == answer_ids == list(ex.input_ids[n_prompt:])
    assert tokenizer.decode(ex.input_ids[n_prompt:]) == ANSWER


def test_messages_rows_render_like_prompt_and_completion(tmp_path, tokenizer):
    messages = [{"role": "system", "content": "Classify."}, {"role": "user", "content": "a post"},
                {"role": "assistant", "content": '{"classification": "normal"}'}]
    path = _write(tmp_path / "m.jsonl", [{"messages": messages}])
    ex = tokenize_rows(read_chat_jsonl(path), tokenizer, 512, "error", path).examples[0]
    text = tokenizer.decode([t for t, l in zip(ex.input_ids, ex.labels) if l != IGNORE])
    assert text == '<|channel|>final<|message|>{"classification": "normal"}<|return|>'


def test_truncate_cuts_the_prompt_from_the_left(tmp_path, tokenizer):
    path = _write(tmp_path / "t.jsonl", [_row("word " * 200)])
    data = tokenize_rows(read_chat_jsonl(path), tokenizer, 64, "truncate", path)
    ex = data.examples[0]
    assert data.truncated == 1 and data.longest > 64 and len(ex.input_ids) == 64
    assert tokenizer.decode([t for t, l in zip(ex.input_ids, ex.labels) if l != IGNORE]) == ANSWER


@pytest.mark.parametrize("rows, mode, message", [
    ([], "truncate", "empty"),
    (["{not json"], "truncate", "line 1: not valid JSON"),
    ([{"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "post"}]}], "truncate",
     "line 1: no assistant turn"),
    ([_row(), _row(completion="")], "truncate", "line 2: no assistant answer"),
    ([{"text": "a post", "label": "hate"}], "truncate", "needs 'messages'"),
    ([_row("word " * 200)], "error", r"line 1: \d+ tokens .* exceed train.max_length=64"),
    ([_row(completion=ANSWER * 30)], "truncate", "exceed train.max_length=64; raise train.max_length"),
])
def test_bad_training_input_is_refused_clearly(tmp_path, tokenizer, rows, mode, message):
    path = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(TrainingDataError, match=message) as info:
        tokenize_rows(read_chat_jsonl(path), tokenizer, 64, mode, path)
    assert str(path) in str(info.value)


def test_step_plan_partitions_each_epoch_over_ranks():
    plans = [StepPlan(50, 2, r, 3, 2, seed=5) for r in range(2)]
    assert plans[0].steps_per_epoch == 4  # 50 // (2 ranks x 3 x 2); 2 rows dropped per epoch
    for epoch in range(2):
        seen = [i for s in range(epoch * 4, epoch * 4 + 4) for p in plans for mb in p.micro_batches(s) for i in mb]
        assert len(seen) == len(set(seen)) == 48
    first = [plans[0].micro_batches(s) for s in range(4)]
    assert first != [plans[0].micro_batches(s) for s in range(4, 8)]  # reshuffled per epoch
    assert first == [StepPlan(50, 2, 0, 3, 2, seed=5).micro_batches(s) for s in range(4)]  # pure function


def test_eval_batches_are_equal_per_rank_and_cover_each_row_once():
    shards = [eval_batches(11, 3, r, 2) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    real = sorted(i for s in shards for idx, dummy in s for i, d in zip(idx, dummy) if not d)
    assert real == list(range(11))


def test_collate_dummy_rows_carry_no_loss(tmp_path, tokenizer):
    path = _write(tmp_path / "t.jsonl", [_row("a"), _row("a much longer post than the other")])
    data = tokenize_rows(read_chat_jsonl(path), tokenizer, 512, "error", path)
    batch = collate(data.examples, pad_id=0, dummy=[False, True])
    assert (batch["labels"][1] == IGNORE).all() and (batch["labels"][0] != IGNORE).any()
    assert batch["attention_mask"][0].sum() == len(data.examples[0].input_ids)


def test_lr_schedule():
    cfg = load_config(None, ["train.learning_rate=0.001", "train.warmup_ratio=0.1"]).train
    lrs = [lr_at(cfg, s, 20) for s in range(20)]
    assert lrs[0] == pytest.approx(0.0005) and lrs[1] == pytest.approx(0.001)  # 2 warmup steps
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] < 0.00002
    linear = load_config(None, ["train.scheduler=linear", "train.warmup_ratio=0.0"]).train
    assert lr_at(linear, 5, 10) == pytest.approx(linear.learning_rate * 0.5)
    assert not math.isnan(lr_at(cfg, 0, 1))


def test_ds_config_takes_batch_settings_from_hsd_config(tmp_path):
    big = ["model.name_or_path=random:gpt-oss-20b", "train.micro_batch_size=3", "train.grad_accum=5",
           "train.max_grad_norm=0.5"]
    cfg = load_config(None, big + ["train.device_memory_gib=40"])
    ds, choice = load_ds_config(cfg, "cuda", world_size=4)
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["gradient_clipping"]) == (3, 5, 0.5)
    assert cfg.train.ds_config == "auto" and ds["zero_optimization"]["stage"] == 3 == choice.name.count("3") + 2
    assert "auto" not in {ds["zero_optimization"][k] for k in ("stage3_max_live_parameters", "stage3_max_reuse_distance",
                                                                "stage3_prefetch_bucket_size")}
    roomy = load_config(None, big + ["train.device_memory_gib=80"])
    assert load_ds_config(roomy, "cuda", world_size=4)[0]["zero_optimization"]["stage"] == 2  # auto: by memory
    zero3 = load_config(None, ["model.name_or_path=random:gpt-oss-tiny", "train.ds_config=zero3"])
    ds, choice = load_ds_config(zero3, world_size=1)
    assert ds["zero_optimization"]["stage"] == 3 and choice is None  # named: taken as given
    for name in ("zero2", "zero3_offload", "ds_configs/zero3.json"):
        assert resolve_ds_config(name).is_file()
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 8}))
    with pytest.raises(ConfigError, match="must be \"auto\""):
        load_ds_config(load_config(None, [f"train.ds_config={fixed}"]))
    with pytest.raises(ConfigError, match="zero2, zero3"):
        resolve_ds_config("zero9")
