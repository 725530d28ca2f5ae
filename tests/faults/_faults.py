"""Helpers of the fault-injection tests, and :data:`FAULTS`, the list the README table shows.

Every test function in tests/faults/ appears in :data:`FAULTS` (a unit test checks both ways),
so the README's table of faults is the list of what is actually tested.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from scenario import write_data_dir  # noqa: E402


@dataclass(frozen=True)
class Fault:
    test: str  # "<file under tests/>::<test function>"
    fault: str  # what is done to hsd
    guarantee: str  # what the test asserts


FAULTS: tuple[Fault, ...] = (
    Fault("faults/test_kill_validate.py::test_five_sigkills_then_resume_equal_uninterrupted_run",
          "validation SIGKILLed 5 times at seeded points (right after a batch was written, and at a random "
          "offset inside the next batch), resumed after each",
          "records equal an uninterrupted greedy run (label, raw response, parse status, prompt hash); "
          "no sample lost or recorded twice after any kill"),
    Fault("faults/test_kill_validate.py::test_torn_last_line_is_dropped_and_redone",
          "half a JSON line appended to a shard (a write cut off by a kill)",
          "the torn line is cut, that sample redone once; the shard stays valid JSONL"),
    Fault("integration/test_resume.py::test_sigkill_then_resume_equals_uninterrupted",
          "validation SIGKILLed mid-run plus a torn line, one resume",
          "every sample once, records equal an uninterrupted run, both attempts in the log"),
    Fault("integration/test_sharded_validate.py::test_resume_shard_and_injected_oom_give_the_single_process_records",
          "out of memory injected on rank 1 of 2 (`HSD_INJECT_FAULT=oom:1:2`) in a lock-step backend "
          "(`deepspeed`, `tp`), in a run resumed from a single process's partial shard",
          "every rank halves its batch and retries; the run completes with records equal to a single-process "
          "`hf` run, each sample once, the resumed ones not redone"),
    Fault("integration/test_lockstep.py::test_an_error_on_one_rank_ends_every_rank",
          "an error (or out of memory at batch size 1) on one rank of a lock-step backend",
          "every rank stops with an error after the same number of collective calls: no rank is left waiting"),
    Fault("integration/test_sharded_validate.py::test_a_killed_rank_ends_the_job",
          "one of 2 ranks of a `tp` validation SIGKILLed at its second batch, ranks started without torchrun "
          "(as submitit's local executor does)",
          "the surviving rank exits with an error instead of waiting; nothing is merged"),
    Fault("faults/test_kill_train.py::test_sigkill_while_saving_checkpoint_resumes_from_last_complete",
          "training SIGKILLed while a checkpoint is being written (its temp dir exists), and the newest "
          "finished checkpoint left without its COMPLETE marker",
          "the partial checkpoints are removed, training resumes from the last complete one, and the "
          "losses of the redone steps equal those before the kill; adapter saved as safetensors"),
    Fault("faults/test_write_failure.py::test_disk_full_mid_run_one_error_earlier_results_intact",
          "the disk fills during a validation (file size limit: writes fail with EFBIG)",
          "one `error:` line (exit 2, no traceback); an earlier run's files byte-identical; the "
          "interrupted run resumes to completion once space is back"),
    Fault("faults/test_write_failure.py::test_disk_full_on_a_real_small_disk",
          "the results disk (a 64 KiB tmpfs) fills up during a validation (ENOSPC; skipped where mounting "
          "is not allowed)",
          "one `error:` line, exit 2; an earlier run on that disk byte-identical; resumes once the disk grows"),
    Fault("faults/test_write_failure.py::test_results_dir_is_a_file_one_error",
          "`results_dir` is a regular file (a write that fails even for root)",
          "one `error:` line naming the path, exit 2, nothing created"),
    Fault("faults/test_run_dirs.py::test_second_process_on_same_run_dir_refuses",
          "two processes start on the same run directory at once",
          "the second exits 2 with `in use by pid …` and writes nothing; the first finishes intact"),
    Fault("faults/test_run_dirs.py::test_default_run_dirs_never_shared",
          "runs started within the same second (default, timestamped names)",
          "each gets its own directory (`…_<ts>-2`); existing directories untouched"),
    Fault("faults/test_run_dirs.py::test_racing_processes_get_distinct_dirs",
          "8 processes claim the same run name at the same moment",
          "8 distinct directories"),
)


@contextlib.contextmanager
def one_thread():
    """In-process runs with one torch thread: on a busy 2-core machine two threads spin-wait
    for each other and a 3-second run takes a minute (subprocesses get OMP_NUM_THREADS=1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_here(cfg: Path, run_dir: Path | None = None) -> Path:
    """``hsd validate`` in this process (no interpreter start-up)."""
    from hsd.config import load_config
    from hsd.recipes.validate import run

    with one_thread():
        return run(load_config(cfg), run_dir)


def hsd_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", **extra)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    return env


def hsd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hsd.cli", *args]


def write_config(tmp: Path, model_dir: Path, n_test: int = 24, name: str = "config.yaml", **sections: Any) -> Path:
    """A small greedy validation over a synthetic split of ``n_test`` samples."""
    data = write_data_dir(tmp / "data", n_test=n_test)
    cfg: dict[str, Any] = {
        "experiment": "faults",
        "results_dir": str(tmp / "results"),
        "data": {"dir": str(data), "split": "test"},
        "prompt": {"template": "simple"},
        "model": {"name_or_path": str(model_dir)},
        "inference": {"batch_size": 2, "max_new_tokens": 16, "temperature": 0.0, "progress": False},
    }
    for section, values in sections.items():
        cfg[section] = {**cfg.get(section, {}), **values} if isinstance(values, dict) else values
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process in its own session (so a kill reaches its children), output to ``log``."""
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, env=env or hsd_env(), stdout=fh, stderr=subprocess.STDOUT,
                                cwd=REPO, start_new_session=True)


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for(cond, proc: subprocess.Popen, log: Path, timeout: float = 300, poll: float = 0.002) -> None:
    """Poll ``cond()`` until true; fail if ``proc`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before the fault point:\n"
                                 f"{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            kill(proc)
            raise AssertionError(f"fault point not reached in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(poll)


def shard_ids(path: Path) -> list[str]:
    """Ids of the complete lines of a shard (a torn last line is not a record)."""
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line)["sample_id"] for line in complete.splitlines() if line.strip()]


def merged(run_dir: Path) -> dict[str, dict]:
    (path,) = run_dir.glob("intermediate_results_*.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == len({r["sample_id"] for r in rows}), "a sample appears twice in the merged file"
    return {r["sample_id"]: r for r in rows}


def comparable(rec: dict) -> tuple:
    """What an interruption must not change."""
    return (rec["predicted_label"], rec["raw_response"], rec["parse_status"], rec["prompt_hash"],
            rec["text"], rec["true_label"], rec["new_tokens"])


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}
