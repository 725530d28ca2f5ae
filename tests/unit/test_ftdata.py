"""hsd.training.ftdata: the split never touches evaluated samples, the files are deterministic,
and every training target is exactly what the parser reads after the inference prompt."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from hsd.config import load_config
from hsd.data import load_split, select_samples
from hsd.errors import TrainingDataError
from hsd.parsing import parse_response
from hsd.prompts import pin_date
from hsd.runs import RunError
from hsd.training import ftdata

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED_DATA / "unified").is_dir(), reason=f"dataset not found at {SHARED_DATA}")


def _cfg(model_dir: Path, *overrides: str):
    return load_config(None, [f"data.dir={SHARED_DATA}", f"model.name_or_path={model_dir}", "data.subset=canned_50_quick",
                              "train.max_train_samples=60", "train.holdout_fraction=0.05", *overrides])


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny_model_dir):
    cfg = _cfg(tiny_model_dir)
    return cfg, ftdata.run(cfg, tmp_path_factory.mktemp("ft") / "data")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_no_overlap_with_evaluated_samples(written):
    cfg, out = written
    evaluated = {s.id for s in select_samples(cfg.data)}
    evaluated |= {s.id for split in ("val", "test") for s in load_split(SHARED_DATA, split)}
    train_ids = {r["id"] for r in _rows(out / "simple" / "train.jsonl")}
    eval_ids = {r["id"] for r in _rows(out / "simple" / "eval.jsonl")}
    assert len(train_ids) == 60 and eval_ids
    assert not train_ids & eval_ids
    assert not (train_ids | eval_ids) & evaluated
    manifest = json.loads((out / ftdata.MANIFEST).read_text())
    assert manifest["excluded_evaluated_rows"] >= 50  # the canned subset is drawn from train


def test_holdout_is_stratified(written):
    cfg, out = written
    pool = [s for s in load_split(SHARED_DATA, "train") if s.id not in {x.id for x in select_samples(cfg.data)}]
    held = Counter((r["label"], r["target_group"]) for r in _rows(out / "simple" / "eval.jsonl"))
    total = sum(held.values())
    for key, n in Counter((s.label, s.target_group) for s in pool).items():
        assert abs(held[key] - total * n / len(pool)) <= 1.0, key


def test_deterministic(written, tmp_path, tiny_model_dir):
    cfg, out = written
    again = ftdata.run(_cfg(tiny_model_dir), tmp_path / "again")
    for name in (f"{fmt}/{part}.jsonl" for fmt in ftdata.FORMATS for part in ("train", "eval")):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


@pytest.mark.parametrize("fmt", ["simple", "optimized"])
def test_target_is_the_final_channel_answer_after_the_inference_prompt(written, fmt, tiny_model_dir):
    from hsd.models.loader import load_tokenizer

    cfg, out = written
    tokenizer = load_tokenizer(cfg.model)
    rows = _rows(out / fmt / "train.jsonl")
    for row in rows:
        assert row["prompt"].endswith("<|start|>assistant")
        assert row["completion"].startswith("<|channel|>final<|message|>{") and row["completion"].endswith("<|return|>")
        answer = json.loads(row["completion"][len("<|channel|>final<|message|>"):-len("<|return|>")])
        assert answer["classification"] == row["label"]
        parsed = parse_response(row["completion"])
        assert parsed.label == row["label"] and parsed.status.startswith("ok")
        # prompt + completion is exactly the chat template's rendering of the whole conversation
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False, reasoning_effort=cfg.prompt.reasoning_effort)
        full = pin_date(full, cfg.prompt.date, full.find(row["messages"][0]["content"]))
        assert full == row["prompt"] + row["completion"]
    with_rationale = [r for r in rows if "rationale" in r["completion"]]
    assert bool(with_rationale) == (fmt == "optimized")


def test_old_optimized_gives_the_target_group_and_answers_label_rationale(written, tiny_model_dir):
    """The old optimized format, byte for byte: user turn ``Target group: <g>\nText: <text>``, answer
    ``LABEL: <label> RATIONALE: <rationale>`` in the final channel, read back by the parser."""
    from hsd.models.loader import load_tokenizer

    cfg, out = written
    tokenizer = load_tokenizer(cfg.model)
    train = {s.id: s for s in load_split(SHARED_DATA, "train")}
    rows = _rows(out / "old_optimized" / "train.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in _rows(out / "simple" / "train.jsonl")]
    for row in rows:
        s = train[row["id"]]
        system, user, answer = row["messages"]
        assert user == {"role": "user", "content": f"Target group: {s.target_group}\nText: {s.text}"}
        rationale = " ".join(s.rationale.split()) if s.rationale and s.rationale.strip() else "not annotated"
        assert answer == {"role": "assistant", "content": f"LABEL: {s.label} RATIONALE: {rationale}"}
        assert row["completion"] == f"<|channel|>final<|message|>{answer['content']}<|return|>"
        parsed = parse_response(row["completion"])
        assert (parsed.label, parsed.rationale, parsed.status) == (s.label, rationale, "ok_final_channel")
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False, reasoning_effort=cfg.prompt.reasoning_effort)
        full = pin_date(full, cfg.prompt.date, full.find(system["content"]))
        assert full == row["prompt"] + row["completion"]
    assert any(r["messages"][2]["content"].endswith("not annotated") for r in rows)
    assert any(not r["messages"][2]["content"].endswith("not annotated") for r in rows)


@pytest.mark.parametrize("response, label, rationale, status", [
    # as post-FT validation records them: special tokens kept, or decoded with them stripped
    ("<|channel|>analysis<|message|>Slur.<|end|><|start|>assistant<|channel|>final<|message|>"
     "LABEL: hate RATIONALE: calls them vermin<|return|>", "hate", "calls them vermin", "ok_final_channel"),
    ("<|channel|>final<|message|>LABEL: normal RATIONALE: not annotated<|return|>", "normal", "not annotated",
     "ok_final_channel"),
    ("analysisThe post is fine.assistantfinalLABEL: normal RATIONALE: a question", "normal", "a question",
     "ok_stripped_final"),
    ("<|channel|>final<|message|>LABEL: offensive RATIONALE: x<|return|>", "unknown", "x", "invalid_label"),
])
def test_old_optimized_answers_are_read_by_the_parser(response, label, rationale, status):
    parsed = parse_response(response)
    assert (parsed.label, parsed.rationale, parsed.status) == (label, rationale, status)


def test_every_ftdata_format_is_a_train_format():
    import typing

    from hsd.config import TrainConfig

    assert set(typing.get_args(typing.get_type_hints(TrainConfig)["format"])) == set(ftdata.FORMATS)


def test_optimized_uses_the_rich_prompt(written):
    _, out = written
    simple, rich = _rows(out / "simple" / "train.jsonl")[0], _rows(out / "optimized" / "train.jsonl")[0]
    assert len(rich["messages"]) > len(simple["messages"]) == 3  # few-shot turns vs system/user/assistant
    assert len(rich["prompt"]) > 3 * len(simple["prompt"])


def test_reuses_identical_data_and_refuses_other_settings(written, tiny_model_dir):
    cfg, out = written
    before = (out / "simple" / "train.jsonl").stat().st_mtime_ns
    assert ftdata.run(cfg, out) == out
    assert (out / "simple" / "train.jsonl").stat().st_mtime_ns == before
    with pytest.raises(RunError, match="other settings"):
        ftdata.run(_cfg(tiny_model_dir, "train.seed=7"), out)


def test_refuses_a_directory_it_did_not_write(tmp_path, tiny_model_dir):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="not fine-tuning data"):
        ftdata.run(_cfg(tiny_model_dir), tmp_path / "x")
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_evaluating_the_whole_train_split_leaves_nothing_to_train_on(tmp_path, tiny_model_dir):
    cfg = _cfg(tiny_model_dir, "data.subset=null", "data.split=train")
    with pytest.raises(TrainingDataError, match="evaluated"):
        ftdata.run(cfg, tmp_path / "d")
    assert not (tmp_path / "d").exists()
