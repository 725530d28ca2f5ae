"""jobs.status: scheduler state look-up for array tasks and progress from shard files."""

from __future__ import annotations

import json
from pathlib import Path

from jobs.status import _lookup, training_progress, validation_progress


def test_array_tasks_find_their_pending_array_line() -> None:
    states = {"12_0": ("COMPLETED", ""), "12_[1-3,5]": ("PENDING", "Dependency"), "13": ("RUNNING", "")}
    assert _lookup(states, "12_0") == ("COMPLETED", "")
    assert _lookup(states, "12_2") == ("PENDING", "Dependency")
    assert _lookup(states, "12_5") == ("PENDING", "Dependency")
    assert _lookup(states, "12_4")[0] == "UNKNOWN"
    assert _lookup(states, "13") == ("RUNNING", "")


def test_progress_counts_complete_shard_lines_per_rank(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "rank0.jsonl").write_text('{"sample_id": "a"}\n{"sample_id": "c"}\n')
    (shards / "rank1.jsonl").write_text('{"sample_id": "b"}\n{"sample_id": "d"')  # torn last line
    (tmp_path / "manifest.json").write_text(json.dumps({"world_size": 2}))
    # no config.yaml: the total is unknown, the counts are still shown
    assert validation_progress(tmp_path) == "rank0 2/? rank1 1/?"


def test_training_progress_is_the_newest_logged_step(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"total_steps": 10}))
    (tmp_path / "train_log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
    assert training_progress(tmp_path) == "step 2/10"
