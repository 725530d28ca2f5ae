"""Run directories: safe names, atomic writes, the run lock, torn-line tolerant JSONL reads."""

import json

import pytest

from hsd.runs import RunError, RunLock, atomic_write_text, check_name, experiment_dir, iter_jsonl, run_dir


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", ".hidden", "a b", "x" * 200])
def test_names_that_escape_or_are_odd_are_refused(bad, tmp_path):
    with pytest.raises(RunError):
        experiment_dir(tmp_path, bad)


def test_good_names(tmp_path):
    assert run_dir(tmp_path, "exp-1", "validate_rich_20250101_000000").parent.name == "exp-1"
    assert check_name("a.b_c-1", "x") == "a.b_c-1"


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_lock_refuses_second_holder(tmp_path):
    with RunLock(tmp_path / ".lock"):
        with pytest.raises(RunError, match="in use"):
            RunLock(tmp_path / ".lock").acquire()
    RunLock(tmp_path / ".lock").acquire().release()


def test_iter_jsonl_drops_torn_last_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n" + json.dumps({"a": 2}) + "\n" + '{"a": 3')
    assert [o["a"] for o in iter_jsonl(path)] == [1, 2]
    path.write_text(json.dumps({"a": 1}) + "\n" + '{"a": ' + "\n" + json.dumps({"a": 2}) + "\n")
    with pytest.raises(RunError, match="line 2"):
        list(iter_jsonl(path))
