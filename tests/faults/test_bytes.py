"""Bytes hsd is handed or left with: a shard torn inside a multi-byte character, non-UTF-8 configs,
data, shards and old pipeline runs, a legacy run killed mid-write.

Each bad file gives one ``error:`` line naming it (exit 2, no traceback) and changes nothing: every
file under the test's directory is byte-identical afterwards, and no lock file is left in an old
run's folder (a snapshot with lock files for those)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from _run_helpers import comparable, merged_records, run_here, snapshot, write_config
from hsd.cli import main as cli
from scenario import record_line, write_data_dir

pytestmark = pytest.mark.faults

N, BATCH = 12, 2
MULTIBYTE = " caf\u00e9 \u2014 \U0001f600 \u0645\u0631\u062d\u0628\u0627"  # 2-, 3-, 4-byte and Arabic characters
OLD_RUN = Path(__file__).resolve().parents[3] / "shared" / "reference" / "recorded_runs" / "baseline_std_20251025_175009"
TS = "20251025_175009"
needs_old_run = pytest.mark.skipif(not OLD_RUN.is_dir(), reason=f"{OLD_RUN} not found (../shared beside the repository)")


def _multibyte_config(tmp: Path, model_dir: Path) -> Path:
    """A validation config whose every sample text holds multi-byte characters."""
    cfg = write_config(tmp, model_dir, synthetic=N, inference={"batch_size": BATCH})
    split = tmp / "data" / "unified" / "unified_test.json"
    rows = json.loads(split.read_text(encoding="utf-8"))
    split.write_text(json.dumps([{**r, "text": r["text"] + MULTIBYTE} for r in rows], ensure_ascii=False),
                     encoding="utf-8")
    return cfg


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, lock files included."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_error(argv: list[str], capsys, names: Path) -> str:
    """Run hsd; assert exit 2 and exactly one ``error:`` line naming the file ``names``."""
    code = cli(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, f"exit {code}:\n{err[-3000:]}"
    assert str(names) in errors[0], errors[0]
    return errors[0]


@pytest.mark.integration
def test_shard_torn_inside_a_multibyte_character_resumes_equal_to_uninterrupted(tiny_model_dir, tmp_path):
    cfg = _multibyte_config(tmp_path, tiny_model_dir)
    expected = merged_records(run_here(cfg, tmp_path / "reference"))
    shard = tmp_path / "torn" / "shards" / "rank0.jsonl"
    shard.parent.mkdir(parents=True)
    ordered = [expected[k] for k in sorted(expected)]
    line = json.dumps(ordered[5], ensure_ascii=False).encode()  # as hsd writes shards
    torn = line[: line.index("\U0001f600".encode()) + 2]  # a kill after 2 of the emoji's 4 bytes
    shard.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in ordered[:5]) + torn)

    run_dir = run_here(cfg, shard.parents[1])

    records = merged_records(run_dir)
    assert {k: comparable(v) for k, v in records.items()} == {k: comparable(v) for k, v in expected.items()}
    assert records[ordered[5]["sample_id"]]["text"].endswith(MULTIBYTE)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["resumed"] == 5 and manifest["evaluated_this_attempt"] == N - 5
    (log,) = run_dir.glob("validation_log_*.log")
    assert "torn last line" in log.read_text(encoding="utf-8")


def test_non_utf8_config_is_one_error_naming_file_and_position(tiny_model_dir, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_model_dir, synthetic=N)
    cfg.write_bytes(cfg.read_bytes().replace(b"experiment: it", b"experiment: caf\xe9"))
    before = snapshot(tmp_path)
    error = _one_error(["validate", "--config", str(cfg)], capsys, cfg)
    assert "not UTF-8 text: byte 0xE9 at line 1, column 16 (byte offset 15)" in error
    assert snapshot(tmp_path) == before


def test_non_utf8_data_file_is_one_error_naming_file_and_line(tiny_model_dir, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_model_dir, synthetic=N)
    split = tmp_path / "data" / "unified" / "unified_test.json"
    split.write_bytes(split.read_bytes().replace(b"#3", "caf\u00e9".encode("latin-1"), 1))
    before = snapshot(tmp_path)
    error = _one_error(["validate", "--config", str(cfg)], capsys, split)
    assert "not UTF-8 text: byte 0xE9 at line" in error and "re-save the file as UTF-8" in error
    assert snapshot(tmp_path) == before and not (tmp_path / "results").exists()


def test_non_utf8_byte_mid_shard_is_one_error_naming_shard_and_line(tiny_model_dir, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_model_dir, synthetic=N)
    run_dir = tmp_path / "run"
    shard = run_dir / "shards" / "rank0.jsonl"
    shard.parent.mkdir(parents=True)
    rows = json.loads((tmp_path / "data" / "unified" / "unified_test.json").read_text(encoding="utf-8"))
    lines = [json.dumps({**json.loads(record_line(r)), "text": "caf\u00e9"}, ensure_ascii=False).encode() for r in rows[:3]]
    lines[1] = lines[1].replace("\u00e9".encode(), b"\xe9")  # Latin-1 on line 2 of 3
    shard.write_bytes(b"\n".join(lines) + b"\n")
    before = snapshot(tmp_path)
    error = _one_error(["validate", "--config", str(cfg), "--run-dir", str(run_dir)], capsys, shard)
    assert "byte 0xE9 at line 2" in error and "delete line 2" in error and "redoes that line's sample" in error
    assert snapshot(tmp_path) == before


def _old_run_with_bad_byte(tmp_path: Path) -> tuple[Path, Path]:
    old = tmp_path / "old"
    shutil.copytree(OLD_RUN, old)
    jsonl = old / f"intermediate_results_{TS}.jsonl"
    data = jsonl.read_bytes()
    at = data.index(b"\n", data.index(b"\n") + 1) + 11  # line 3, column 11
    jsonl.write_bytes(data[:at] + b"\xe9" + data[at:])
    return old, jsonl


@needs_old_run
def test_non_utf8_legacy_file_under_report_is_one_error_old_run_untouched(tmp_path, capsys):
    old, jsonl = _old_run_with_bad_byte(tmp_path)
    before = _tree(tmp_path)
    error = _one_error(["report", str(old)], capsys, jsonl)
    assert "byte 0xE9 at line 3, column 11" in error
    assert _tree(tmp_path) == before  # no report, no .lock in the old run's folder


@needs_old_run
def test_non_utf8_legacy_file_under_import_legacy_is_one_error_old_run_untouched(tmp_path, capsys):
    old, jsonl = _old_run_with_bad_byte(tmp_path)
    before = _tree(tmp_path)
    error = _one_error(["import-legacy", str(old), "--out", str(tmp_path / "out")], capsys, jsonl)
    assert "byte 0xE9 at line 3, column 11" in error and "import the copy" in error
    assert _tree(tmp_path) == before and not (tmp_path / "out").exists()


@needs_old_run
def test_legacy_run_killed_mid_write_imports_with_no_phantom_strategy(tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(OLD_RUN, old)
    jsonl = old / f"intermediate_results_{TS}.jsonl"
    data = jsonl.read_bytes()
    last = json.loads(data.splitlines()[-1])
    line = json.dumps({**last, "sample_id": 9999, "raw_response": "analysis" + MULTIBYTE}, ensure_ascii=False).encode()
    jsonl.write_bytes(data + line[: line.index("\U0001f600".encode()) + 3])  # cut inside the emoji, before "strategy"
    before = _tree(old)
    out = tmp_path / "imported"
    assert cli(["import-legacy", str(old), "--out", str(out)]) == 0
    assert cli(["report", str(out), "--data-dir", str(write_data_dir(tmp_path / "data"))]) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics_full.json").read_text(encoding="utf-8"))
    assert metrics["run"]["strategy"] == "baseline_standard" and metrics["run"]["n_records"] == 254
    assert _tree(old) == before
