"""Helpers shared by the validation integration tests: a small config and record readers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
N_SAMPLES = 20


def require_data() -> Path:
    if not (SHARED_DATA / "canned" / "canned_50_quick.json").is_file():
        pytest.skip(f"prepared data not found at {SHARED_DATA} (the validation tests read the canned subset)")
    return SHARED_DATA


def write_config(tmp_path: Path, model_dir: Path, name: str = "config.yaml", **inference) -> Path:
    """A fast validation: 20 stratified samples, the short prompt, 16 greedy new tokens."""
    cfg = {
        "experiment": "it",
        "results_dir": str(tmp_path / "results"),
        "data": {"dir": str(require_data()), "subset": "canned_50_quick", "max_samples": N_SAMPLES},
        "prompt": {"template": "simple"},
        "model": {"name_or_path": str(model_dir)},
        "inference": {"batch_size": 4, "max_new_tokens": 16, "temperature": 0.0, "progress": False, **inference},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def hsd_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def hsd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hsd.cli", *args]


def merged_records(run_dir: Path) -> dict[str, dict]:
    """The merged per-sample file, by sample id (asserting each id appears once)."""
    (path,) = run_dir.glob("intermediate_results_*.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    ids = [r["sample_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a sample appears twice in the merged file"
    return {r["sample_id"]: r for r in rows}


def shard_ids(path: Path) -> list[str]:
    return [json.loads(line)["sample_id"] for line in path.read_text().splitlines() if line.strip()]


def comparable(rec: dict) -> tuple:
    """What must not depend on world size, batch composition or interruptions."""
    return (rec["text"], rec["true_label"], rec["prompt_hash"], rec["raw_response"],
            rec["predicted_label"], rec["parse_status"], rec["prompt_tokens"], rec["new_tokens"])
