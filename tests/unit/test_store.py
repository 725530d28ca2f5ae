"""Shard files: durable appends, torn tails, merging, sharding and batching (no model)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hsd.inference import store
from hsd.inference.batching import OomBackoff, length_sorted_batches
from hsd.records import Record, Sample
from hsd.runs import RunError
from hsd.recipes.validate import shard_for_rank


def rec(i: int, rank: int = 0) -> Record:
    return Record(sample_id=f"s{i:02d}", text=f"text {i} ✓", true_label="hate", target_group="lgbtq",
                  persona_tag="x", source="toxigen", strategy="simple", prompt_hash="0" * 16,
                  raw_response='<|channel|>final<|message|>{"classification": "hate"}<|return|>',
                  predicted_label="hate", rationale=None, parse_status="ok_final_channel", latency_s=0.1, rank=rank)


def sample(i: int) -> Sample:
    return Sample(id=f"s{i:02d}", text="t", label="normal", target_group="mexican", persona_tag="p", source="s")


def test_append_writes_complete_lines_and_reads_back(tmp_path):
    with store.ShardWriter(tmp_path, 3) as w:
        w.append([rec(1), rec(2)])
        w.append([rec(3)])
    path = tmp_path / "shards" / "rank3.jsonl"
    assert path.read_text().count("\n") == 3
    assert [r.sample_id for r in store.read_records(tmp_path)] == ["s01", "s02", "s03"]
    assert store.read_records(tmp_path)[0] == rec(1)  # round trip, special tokens and unicode kept


def test_torn_tail_is_dropped_truncated_and_appendable(tmp_path):
    with store.ShardWriter(tmp_path, 0) as w:
        w.append([rec(1), rec(2)])
    path = store.shard_path(tmp_path, 0)
    good = path.read_bytes()
    torn = json.dumps(rec(3).to_json()).encode()[:40]
    path.write_bytes(good + torn)
    assert store.recorded_ids(tmp_path) == {"s01", "s02"}  # s03 will be redone
    assert store.truncate_torn_tail(path) == len(torn)
    assert path.read_bytes() == good
    with store.ShardWriter(tmp_path, 0) as w:
        w.append([rec(3)])
    assert [r.sample_id for r in store.read_records(tmp_path)] == ["s01", "s02", "s03"]


@pytest.mark.parametrize("char,keep", [("\u00e9", 1), ("\u2014", 2), ("\U0001f600", 3)])
def test_a_tail_torn_inside_a_multibyte_character_is_cut_at_the_last_newline(tmp_path, char, keep):
    """Shards are written with ensure_ascii=False: a kill mid-write often cuts a character in two."""
    with store.ShardWriter(tmp_path, 0) as w:
        w.append([rec(1), rec(2)])
    path = store.shard_path(tmp_path, 0)
    good = path.read_bytes()
    line = json.dumps(replace(rec(3), text=f"caf{char}!").to_json(), ensure_ascii=False).encode()
    torn = line[: line.index(char.encode()) + keep]
    path.write_bytes(good + torn)
    assert store.recorded_ids(tmp_path) == {"s01", "s02"}
    assert store.truncate_torn_tail(path) == len(torn) and path.read_bytes() == good
    with store.ShardWriter(tmp_path, 0) as w:
        w.append([replace(rec(3), text=f"caf{char}!")])
    assert [r.text for r in store.read_records(tmp_path)] == ["text 1 \u2713", "text 2 \u2713", f"caf{char}!"]


@pytest.mark.parametrize("damage,words", [
    (lambda line: line[:10] + b"\xe9" + line[10:], ("not UTF-8 text: byte 0xE9 at line 1, column 11",)),
    (lambda line: line[:-5] + b"\n", ("line 1 is not valid JSON",)),
    (lambda line: b"[1, 2]\n", ("line 1 is not an hsd record",)),
])
def test_damage_mid_shard_is_one_error_naming_shard_and_line(tmp_path, damage, words):
    path = store.shard_path(tmp_path, 0)
    path.parent.mkdir(parents=True)
    first, second = (json.dumps(rec(i).to_json(), ensure_ascii=False).encode() + b"\n" for i in (1, 2))
    path.write_bytes(damage(first) + second)
    before = path.read_bytes()
    with pytest.raises(RunError) as info:
        store.recorded_ids(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "delete line 1" in msg and "redoes that line's sample" in msg
    for word in words:
        assert word in msg, msg
    assert store.truncate_torn_tail(path) == 0 and path.read_bytes() == before  # only a torn tail is ever cut


def test_a_complete_last_line_that_is_no_json_is_torn_too(tmp_path):
    path = store.shard_path(tmp_path, 0)
    path.parent.mkdir(parents=True)
    good = json.dumps(rec(1).to_json()).encode() + b"\n"
    path.write_bytes(good + b"\x00" * 7 + b"\n")  # a crash that left zeros where the last write was
    assert store.recorded_ids(tmp_path) == {"s01"}
    assert store.truncate_torn_tail(path) == 8 and path.read_bytes() == good


def test_writer_truncates_its_own_torn_tail_before_appending(tmp_path):
    path = store.shard_path(tmp_path, 1)
    path.parent.mkdir(parents=True)
    path.write_text('{"sample_id": "s0')  # the only line is torn
    with store.ShardWriter(tmp_path, 1) as w:
        w.append([rec(5)])
    assert [json.loads(x)["sample_id"] for x in path.read_text().splitlines()] == ["s05"]


def test_shard_files_in_rank_order(tmp_path):
    for k in (10, 2, 0, 1):
        store.ShardWriter(tmp_path, k).close()
    assert [p.name for p in store.shard_files(tmp_path)] == ["rank0.jsonl", "rank1.jsonl", "rank2.jsonl", "rank10.jsonl"]


def test_merge_reads_all_ranks_sorted(tmp_path):
    with store.ShardWriter(tmp_path, 0) as a, store.ShardWriter(tmp_path, 1) as b:
        a.append([rec(3), rec(1)])
        b.append([rec(2, rank=1)])
    merged = store.merge(tmp_path, ["s01", "s02", "s03"])
    assert [r.sample_id for r in merged] == ["s01", "s02", "s03"]


@pytest.mark.parametrize(("written", "expected", "message"), [
    ([1, 2, 2], [1, 2], "more than once"),
    ([1], [1, 2], "have no record"),
    ([1, 2, 9], [1, 2], "not in the selected samples"),
])
def test_merge_refuses_inconsistent_shards(tmp_path, written, expected, message):
    with store.ShardWriter(tmp_path, 0) as w:
        w.append([rec(i) for i in written])
    with pytest.raises(RunError, match=message):
        store.merge(tmp_path, [f"s{i:02d}" for i in expected])


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_are_disjoint_cover_everything_and_skip_done(world):
    samples = [sample(i) for i in (7, 3, 9, 1, 4, 8, 2)]
    parts = [shard_for_rank(samples, r, world, done=set()) for r in range(world)]
    ids = [s.id for part in parts for s in part]
    assert sorted(ids) == sorted(s.id for s in samples) and len(ids) == len(set(ids))
    assert shard_for_rank(list(reversed(samples)), 0, world, set()) == parts[0]  # input order irrelevant
    done = {"s03", "s07"}
    left = [s.id for r in range(world) for s in shard_for_rank(samples, r, world, done)]
    assert sorted(left) == sorted(s.id for s in samples if s.id not in done)


def test_length_sorted_batches_longest_first_stable():
    keys = ["a", "b", "c", "d", "e"]
    lengths = [5, 9, 5, 1, 9]
    assert length_sorted_batches(keys, lengths, 2) == [[1, 4], [0, 2], [3]]
    assert sorted(i for b in length_sorted_batches(keys, lengths, 3) for i in b) == [0, 1, 2, 3, 4]


class FakeOom(Exception):
    pass


def test_oom_backoff_halves_and_keeps_the_smaller_size():
    calls = []

    def fn(chunk):
        calls.append(len(chunk))
        if len(chunk) > 3:
            raise FakeOom
        return [x * 10 for x in chunk]

    backoff = OomBackoff(8, is_oom=lambda e: isinstance(e, FakeOom))
    assert backoff(list(range(7)), fn) == [x * 10 for x in range(7)]
    assert calls == [7, 3, 3, 1] and backoff.size == 3
    assert backoff([1, 2, 3, 4], fn) == [10, 20, 30, 40]  # stays at 3: no second OOM
    assert calls[4:] == [3, 1]


def test_oom_at_batch_size_one_and_other_errors_are_raised():
    def always_oom(chunk):
        raise FakeOom

    with pytest.raises(FakeOom):
        OomBackoff(4, is_oom=lambda e: isinstance(e, FakeOom))([1, 2, 3], always_oom)

    def boom(chunk):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        OomBackoff(4, is_oom=lambda e: isinstance(e, FakeOom))([1, 2], boom)


def test_record_json_is_asdict_of_flat_fields():
    """Record.to_json skips dataclasses.asdict's deep copy: only sound while every field is flat."""
    import dataclasses

    from hsd.records import RECORD_FIELDS, Record

    full = replace(rec(7), p_hate=0.25, prompt_tokens=10, new_tokens=3, stop_reason="stop", prompt_prefix_hash="ab",
                   prompt_tail="tail")
    assert full.to_json() == dataclasses.asdict(full) and list(full.to_json()) == list(RECORD_FIELDS)
    assert all(v is None or isinstance(v, (str, int, float)) for v in full.to_json().values())
    assert Record.from_json({**full.to_json(), "a_key_from_elsewhere": 1}) == full
