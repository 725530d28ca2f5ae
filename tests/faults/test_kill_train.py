"""Training killed while it writes a checkpoint resumes from the last complete one."""

from __future__ import annotations

import json
import signal

import pytest

from _run_helpers import hsd_cmd, kill, start, wait_for
from scenario import write_data_dir

pytestmark = [pytest.mark.faults, pytest.mark.integration]
STEPS = 4


def train_config(tmp, model_dir):
    import yaml

    cfg = {
        "experiment": "faults",
        "results_dir": str(tmp / "results"),
        "data": {"dir": str(write_data_dir(tmp / "data")), "split": "test"},
        "model": {"name_or_path": str(model_dir)},
        "train": {"max_train_samples": 16, "micro_batch_size": 2, "max_steps": STEPS, "save_every": 1,
                  "keep_checkpoints": 3, "eval_every": 100, "gradient_checkpointing": False, "max_length": 256},
    }
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def log_losses(run_dir) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert len(steps) == len(set(steps)), f"a step logged twice: {steps}"
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_sigkill_while_saving_checkpoint_resumes_from_last_complete(tiny_model_dir, tmp_path):
    cfg, run_dir, log = train_config(tmp_path, tiny_model_dir), tmp_path / "run", tmp_path / "train.log"
    ckpts = run_dir / "checkpoints"
    cmd = hsd_cmd("train", "--config", str(cfg), "--run-dir", str(run_dir))
    proc = start(cmd, log)
    # Step 3's checkpoint is being written: its temp directory exists, the final one does not yet.
    wait_for(lambda: (ckpts / ".tmp-step_0000003").exists(), proc, log, timeout=600, poll=0.0005)
    kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert (ckpts / ".tmp-step_0000003").exists() and not (ckpts / "step_0000003").exists(), \
        "the kill did not land inside the checkpoint write"
    before = log_losses(run_dir)
    assert sorted(before) == [1, 2, 3], before
    # A second kind of damage: the newest finished directory lost its completion marker.
    (ckpts / "step_0000002" / "COMPLETE").unlink()

    final = start(cmd, log)
    assert final.wait(timeout=600) == 0, log.read_text(errors="replace")[-4000:]

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETED" and manifest["steps"] == STEPS
    assert manifest["resumed_at"] == [1], "must resume from step 1, the last complete checkpoint"
    assert not list(ckpts.glob(".tmp-*")), "the partial checkpoint was not removed"
    assert all((p / "COMPLETE").is_file() for p in ckpts.glob("step_*"))
    after = log_losses(run_dir)
    assert sorted(after) == list(range(1, STEPS + 1))
    # Steps 2 and 3 were trained twice: from the step-1 state they must give the same losses.
    for step in (1, 2, 3):
        assert after[step] == pytest.approx(before[step], rel=1e-5, abs=1e-6), (step, before, after)
    adapter = run_dir / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert not list(adapter.glob("*.bin")), "adapter weights must be safetensors, not pickle"
