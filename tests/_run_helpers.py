"""Starting ``hsd`` runs from tests, breaking them, and comparing their records.

One copy for the fault, resume and distributed validation tests (tests/faults/, tests/integration/):
the environment and command of an ``hsd`` subprocess, a small validation config, launchers for 2
ranks, starting/killing a process at a fault point, and readers of shards and merged records.
:func:`comparable` says what an interruption, a resume, the world size or the batch composition
must not change; :func:`shard_ids` reads a shard a kill may have torn.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from scenario import write_data_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
N_SAMPLES = 20  # samples of the canned-subset config (write_config without ``synthetic``)


# ----------------------------------------------------------------------------- starting a run

def hsd_env(**extra: str) -> dict[str, str]:
    """This environment without a launcher's rank variables, plus ``extra`` (which may set them)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    # DeepSpeed JIT-builds its CPU comm op once (~30 s); keep it between runs.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    env.update(extra)
    return env


def hsd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hsd.cli", *args]


def require_data() -> Path:
    if not (SHARED_DATA / "canned" / "canned_50_quick.json").is_file():
        pytest.skip(f"prepared data not found at {SHARED_DATA} (the validation tests read the canned subset)")
    return SHARED_DATA


def write_config(tmp: Path, model_dir: Path, *, synthetic: int | None = None, name: str = "config.yaml",
                 **sections: Any) -> Path:
    """A fast greedy validation: the short prompt, 16 new tokens, batches of 4.

    Data: ``synthetic=n`` writes n made-up test samples under ``tmp/data`` (tests/scenario.py, no
    dataset needed); without it, the first :data:`N_SAMPLES` stratified samples of the prepared
    canned subset (skipped where it is absent). ``sections`` replace top-level values or update
    sections: ``experiment="faults"``, ``inference={"batch_size": 2}``.
    """
    data = ({"dir": str(write_data_dir(tmp / "data", n_test=synthetic)), "split": "test"} if synthetic
            else {"dir": str(require_data()), "subset": "canned_50_quick", "max_samples": N_SAMPLES})
    cfg: dict[str, Any] = {
        "experiment": "it",
        "results_dir": str(tmp / "results"),
        "data": data,
        "prompt": {"template": "simple"},
        "model": {"name_or_path": str(model_dir)},
        "inference": {"batch_size": 4, "max_new_tokens": 16, "temperature": 0.0, "progress": False},
    }
    for section, values in sections.items():
        cfg[section] = {**cfg.get(section, {}), **values} if isinstance(values, dict) else values
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
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
    """``hsd validate`` in this process (no interpreter start-up); returns the run directory."""
    from hsd.config import load_config
    from hsd.recipes.validate import run

    with one_thread():
        return run(load_config(cfg), run_dir)


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


# ----------------------------------------------------------------------------- breaking a run

def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process in its own session (so a kill reaches its children), output appended to ``log``."""
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, env=env or hsd_env(), stdout=fh, stderr=subprocess.STDOUT,
                                cwd=REPO, start_new_session=True)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s whole process group (if it still runs) and reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def lines(path: Path) -> int:
    """Newlines in ``path`` (0 while it does not exist): the complete records of a shard."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout: float = 300,
             poll: float = 0.002) -> None:
    """Poll ``cond()`` until true; fail if ``proc`` ends first or time runs out (then kill it)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before the fault point:\n"
                                 f"{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            kill(proc)
            raise AssertionError(f"fault point not reached in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(poll)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (lock files excluded: their holder line changes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# ----------------------------------------------------------------------------- reading records

def shard_ids(path: Path, *, torn_tail_ok: bool = True) -> list[str]:
    """Sample ids of a shard's records, in file order.

    A last line without its newline is a write a kill cut off (it may end inside a multi-byte
    character, or happen to parse): not a record, as for ``hsd.runs.iter_jsonl``. It is left out,
    or fails the test with ``torn_tail_ok=False`` (after a finished run every line is whole).
    Any other line that is not a JSON record fails the test.
    """
    *complete, tail = path.read_bytes().split(b"\n")  # tail: b"" when the file ends with its newline
    assert torn_tail_ok or not tail, f"{path}: torn last line {tail[-80:]!r}"
    ids = []
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            ids.append(json.loads(line)["sample_id"])
        except (ValueError, KeyError, TypeError) as exc:  # ValueError: bad JSON or bad UTF-8
            raise AssertionError(f"{path}:{number}: not a record ({exc!r}): {line[:80]!r}") from None
    return ids


def seed_shard(run_dir: Path, records: dict[str, dict], n: int) -> None:
    """A single-process run stopped after ``n`` samples: its rank-0 shard holds their records."""
    (run_dir / "shards").mkdir(parents=True)
    first = [records[k] for k in sorted(records)[:n]]
    (run_dir / "shards" / "rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first))


def merged_records(run_dir: Path) -> dict[str, dict]:
    """The merged per-sample file, by sample id (asserting each id appears once)."""
    (path,) = run_dir.glob("intermediate_results_*.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    ids = [r["sample_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a sample appears twice in the merged file"
    return {r["sample_id"]: r for r in rows}


VARIES = ("latency_s", "rank")  # wall time, and which rank happened to evaluate the sample
P_HATE_TOLERANCE = 1e-5  # score mode: the same logits summed in another order (batch padding, ranks)


class _Near:
    """A probability equal to another within :data:`P_HATE_TOLERANCE`."""

    __slots__ = ("value",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: float) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Near) and abs(self.value - other.value) <= P_HATE_TOLERANCE

    def __repr__(self) -> str:
        return f"{self.value!r}±{P_HATE_TOLERANCE:g}"


def comparable(rec: dict) -> tuple[tuple[str, Any], ...]:
    """What an interruption, a resume, the world size or the batch composition must not change:
    every field of :class:`hsd.records.Record` but :data:`VARIES` (label, rationale, parse status,
    raw response, prompt hash, token counts, stop reason, ...), as (field, value) pairs for a
    readable diff; ``p_hate`` within :data:`P_HATE_TOLERANCE`."""
    from hsd.records import RECORD_FIELDS

    names = [n for n in RECORD_FIELDS if n not in VARIES]
    missing = [n for n in names if n not in rec]
    assert not missing, f"record {rec.get('sample_id')} lacks {missing}"
    return tuple((n, _Near(rec[n]) if n == "p_hate" and rec[n] is not None else rec[n]) for n in names)
