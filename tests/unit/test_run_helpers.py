"""The run helpers the fault and validation tests rely on (tests/_run_helpers.py) read and compare
what they should: a shard a kill tore, and the record fields an interruption must not change."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from _run_helpers import comparable, shard_ids
from hsd.records import Record

REC = Record("s1", "les gens d'ici… 🙂", "hate", "lgbtq", "lgbtq", "src", "simple", "0123456789abcdef",
             '<|channel|>final<|message|>{"classification": "hate", "rationale": "slur"}<|return|>', "hate", "slur",
             "ok_final_channel", 0.25, rank=0, p_hate=None, prompt_tokens=80, new_tokens=12, stop_reason="stop")


def _line(sample_id: str) -> bytes:
    return (json.dumps(replace(REC, sample_id=sample_id).to_json(), ensure_ascii=False) + "\n").encode()


WHOLE = _line("a") + _line("b")
TORN = {  # what a kill can leave after the last complete line
    "half a line": _line("c")[:40],
    "inside a multi-byte character": _line("c")[: _line("c").index("🙂".encode()) + 2],
    "all but the newline": _line("c")[:-1],  # parses, but the write did not finish
}


@pytest.mark.parametrize("tail", TORN.values(), ids=TORN.keys())
def test_a_torn_last_line_is_not_a_record(tmp_path: Path, tail: bytes) -> None:
    shard = tmp_path / "rank0.jsonl"
    shard.write_bytes(WHOLE + tail)
    assert shard_ids(shard) == ["a", "b"]
    with pytest.raises(AssertionError, match="torn last line"):
        shard_ids(shard, torn_tail_ok=False)


@pytest.mark.parametrize("tail", TORN.values(), ids=TORN.keys())
def test_hsd_reads_a_torn_shard_as_the_helper_does(tmp_path: Path, tail: bytes) -> None:
    from hsd.runs import iter_jsonl

    shard = tmp_path / "rank0.jsonl"
    shard.write_bytes(WHOLE + tail)
    assert [r["sample_id"] for r in iter_jsonl(shard)] == shard_ids(shard)


def test_a_whole_shard_reads_the_same_either_way(tmp_path: Path) -> None:
    shard = tmp_path / "rank0.jsonl"
    shard.write_bytes(WHOLE)
    assert shard_ids(shard) == shard_ids(shard, torn_tail_ok=False) == ["a", "b"]


def test_a_bad_line_before_the_last_fails(tmp_path: Path) -> None:
    shard = tmp_path / "rank0.jsonl"
    shard.write_bytes(_line("a")[:30] + b"\n" + _line("b"))
    with pytest.raises(AssertionError, match=r"rank0.jsonl:1: not a record"):
        shard_ids(shard)


def test_comparable_ignores_timing_and_rank_only() -> None:
    rec = REC.to_json()
    assert comparable({**rec, "latency_s": 9.0, "rank": 3}) == comparable(rec)
    for field, other in (("predicted_label", "normal"), ("rationale", None), ("parse_status", "ok_unframed"),
                         ("raw_response", ""), ("prompt_hash", "f" * 16), ("text", "other"), ("true_label", "normal"),
                         ("prompt_tokens", 81), ("new_tokens", 11), ("stop_reason", "length"), ("p_hate", 0.5)):
        assert comparable({**rec, field: other}) != comparable(rec), field


def test_comparable_p_hate_within_float_noise() -> None:
    rec = {**REC.to_json(), "p_hate": 0.3}
    assert comparable({**rec, "p_hate": 0.3 + 1e-7}) == comparable(rec)
    assert comparable({**rec, "p_hate": 0.3 + 1e-3}) != comparable(rec)
    assert comparable({**rec, "p_hate": None}) != comparable(rec)
