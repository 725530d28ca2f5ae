"""Writes that fail (a full disk, a file where a directory should be): one clear error, exit 2,
earlier results byte-identical, and the interrupted run resumable once the disk has room.

Root ignores permission bits, so ``chmod 555`` proves nothing here; these faults fail for
root too: a file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG — Python ignores
SIGXFSZ), a real full tmpfs (ENOSPC; needs mount rights, skipped without them), and a regular
file in place of the results directory.
"""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest

from _run_helpers import (REPO, hsd_cmd, hsd_env, merged_records, one_thread, run_here, shard_ids, snapshot,
                          write_config)
from hsd.cli import main
from scenario import record_line, synthetic_rows

pytestmark = [pytest.mark.faults, pytest.mark.integration]
N = 24
FILE_LIMIT = 12_000  # bytes: room for config, manifest and log; the shard outgrows it mid-run


def earlier_run(results: Path) -> Path:
    """A finished earlier run in the same experiment, whose files must survive."""
    run = results / "faults" / "validate_simple_20250101_000000"
    (run / "shards").mkdir(parents=True)
    rows = synthetic_rows(6, seed=9)
    (run / "shards" / "rank0.jsonl").write_text("".join(record_line(r) for r in rows))
    (run / "performance_metrics_20250101_000000.csv").write_text("strategy,accuracy\nsimple,0.5\n")
    (run / "manifest.json").write_text(json.dumps({"status": "complete", "samples": 6}))
    return run


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


@pytest.fixture
def tmpfs(tmp_path):
    """A 64 KiB tmpfs: a disk that really fills (ENOSPC)."""
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}); the file-size-limit case covers a full disk")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def run_out_of_space(cfg: Path, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run(hsd_cmd("validate", "--config", str(cfg)), capture_output=True, text=True,
                          env=hsd_env(), cwd=REPO, timeout=600, preexec_fn=preexec)


def check_one_error_then_resume(res, results: Path, earlier: Path, before: dict, cfg: Path, room) -> None:
    assert res.returncode == 2, f"rc {res.returncode}\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot write" in errors[0], res.stderr[-3000:]
    assert snapshot(earlier) == before, "an earlier run's files changed"
    (failed,) = [p for p in (results / "faults").iterdir() if p != earlier]
    assert json.loads((failed / "manifest.json").read_text())["status"] != "COMPLETED"
    room()  # the disk has room again: the same run directory resumes
    run_here(cfg, failed)
    ids = shard_ids(failed / "shards" / "rank0.jsonl", torn_tail_ok=False)
    assert len(ids) == len(set(ids)) == N
    assert json.loads((failed / "manifest.json").read_text())["resumed"] > 0
    return merged_records(failed)


def test_disk_full_mid_run_one_error_earlier_results_intact(tiny_model_dir, tmp_path):
    cfg = write_config(tmp_path, tiny_model_dir, synthetic=N, experiment="faults")
    results = tmp_path / "results"
    earlier = earlier_run(results)
    before = snapshot(earlier)
    res = run_out_of_space(cfg, _limit_file_size)
    records = check_one_error_then_resume(res, results, earlier, before, cfg, room=lambda: None)
    assert len(records) == N


def test_disk_full_on_a_real_small_disk(tiny_model_dir, tmp_path, tmpfs):
    cfg = write_config(tmp_path, tiny_model_dir, synthetic=N, experiment="faults", results_dir=str(tmpfs))
    earlier = earlier_run(tmpfs)
    before = snapshot(earlier)
    res = run_out_of_space(cfg)

    def room() -> None:
        subprocess.run(["mount", "-o", "remount,size=16m", str(tmpfs)], check=True)

    records = check_one_error_then_resume(res, tmpfs, earlier, before, cfg, room)
    assert len(records) == N


def test_results_dir_is_a_file_one_error(tiny_model_dir, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("not a directory\n")
    cfg = write_config(tmp_path, tiny_model_dir, synthetic=6, experiment="faults")
    before = snapshot(tmp_path)
    with one_thread():
        code = main(["validate", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    (error,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "cannot write to" in error and str(blocker) in error
    assert snapshot(tmp_path) == before
