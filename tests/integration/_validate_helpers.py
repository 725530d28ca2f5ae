"""Helpers shared by the validation integration tests: a small config and record readers."""

from __future__ import annotations

import json
import os
import subprocess
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


def hsd_env(**extra: str) -> dict[str, str]:
    """This environment without a launcher's rank variables, plus ``extra`` (which may set them)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    # DeepSpeed JIT-builds its CPU comm op once (~30 s); keep it between runs.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    env.update(extra)
    return env


LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    # --multi_gpu on a CPU box: accelerate still starts 2 processes (its --cpu mode starts one)
    "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2",
                   "--num_machines", "1", "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", "0"],
}


def launch(launcher: str, cfg: Path, run_dir: Path, *overrides: str, **extra_env: str) -> subprocess.CompletedProcess:
    """``hsd validate`` on 2 ranks started by ``launcher``; asserts it succeeded."""
    cmd = LAUNCHERS[launcher] + ["-m", "hsd.cli", "validate", "--config", str(cfg), "--run-dir", str(run_dir),
                                 *overrides]
    res = subprocess.run(cmd, capture_output=True, text=True, env=hsd_env(**extra_env), timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-6000:]
    return res


def seed_shard(run_dir: Path, records: dict[str, dict], n: int) -> None:
    """A single-process run stopped after ``n`` samples: its rank-0 shard holds their records."""
    (run_dir / "shards").mkdir(parents=True)
    first = [records[k] for k in sorted(records)[:n]]
    (run_dir / "shards" / "rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first))


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
