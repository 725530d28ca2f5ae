"""hsd.rundir: what a run directory is, which settings a resume may change, how an attempt ends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsd.config import dump_config, load_config, to_dict
from hsd.rundir import ConfigCheck, RunDirectory, kind_of
from hsd.runs import RunError, Status

CHECK = ConfigCheck(sections=("inference",), keys=("model.dtype",), free=frozenset({"inference.batch_size"}))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _dir(tmp_path: Path, **files: str) -> Path:
    path = tmp_path / "d"
    path.mkdir()
    for name, text in files.items():
        (path / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
        (path / name.replace("__", "/")).write_text(text)
    return path


@pytest.mark.parametrize("files, kind", [
    ({}, None),
    ({".lock": "pid 1 on h\n", "config.yaml": "{}"}, None),  # killed between lock and manifest
    # hsd's own transients: another process's writability probe, an atomic write's temporary
    ({".lock": "pid 1 on h\n", ".write-test-k2j": "", ".config.yaml.x81.tmp": "{"}, None),
    ({"manifest.json": json.dumps({"command": "train"}), ".manifest.json.q7.tmp": "{"}, "train"),
    ({"manifest.json": json.dumps({"command": "validate"})}, "validate"),
    ({"manifest.json": json.dumps({"command": "train", "status": "completed"})}, "train"),
    ({"manifest.json": json.dumps({"command": "hsd import-legacy OLD --out X"})}, "import-legacy"),
    ({"manifest.json": json.dumps({"status": "running"}), "shards__rank0.jsonl": ""}, "validate"),  # no command
    ({"shards__rank0.jsonl": ""}, "validate"),
    ({"train_log.jsonl": "", "checkpoints__x": ""}, "train"),
])
def test_kind_of_a_run(tmp_path, files, kind):
    assert kind_of(_dir(tmp_path, **files)) == kind


@pytest.mark.parametrize("files, words", [
    ({"jobs.json": "{}"}, "an experiment directory"),
    ({"ftdata.json": "{}", "simple__train.jsonl": ""}, "fine-tuning data"),
    ({"notes.txt": "mine"}, "not a run hsd wrote"),
    ({"manifest.json": "{cut"}, "cannot be read"),
])
def test_what_is_not_a_run_is_named(tmp_path, files, words):
    with pytest.raises(RunError, match=words):
        kind_of(_dir(tmp_path, **files))


def test_config_check_compares_leaves_and_frees_declared_keys():
    saved = {"inference": {"batch_size": 8, "sampling": {"top_p": 1.0}}, "model": {"dtype": "auto", "device": "cpu"}}
    now = {"inference": {"batch_size": 2, "sampling": {"top_p": 0.9}}, "model": {"dtype": "bfloat16", "device": "cuda"}}
    assert CHECK.changed(saved, now) == ["inference.sampling.top_p", "model.dtype"]
    assert CHECK.changed(saved, {**now, "inference": {"batch_size": 1, "sampling": {"top_p": 1.0}},
                                 "model": {"dtype": "auto", "device": "cuda"}}) == []


def test_refusals_change_nothing_and_leave_no_lock(tmp_path):
    cfg = load_config(None)
    train_run = _dir(tmp_path, **{"manifest.json": json.dumps({"command": "train", "status": "COMPLETED"})})
    before = _files(train_run)
    with pytest.raises(RunError, match="is a run of `hsd train`.*not of `hsd validate`"):
        RunDirectory(train_run, "validate", CHECK).claim(cfg)
    assert _files(train_run) == before

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text(dump_config(load_config(None, ["inference.max_new_tokens=5"])))
    (other / "manifest.json").write_text(json.dumps({"command": "validate", "status": "INTERRUPTED"}))
    before = _files(other)
    with pytest.raises(RunError, match="started with other settings .*inference.max_new_tokens: saved 5, now None"):
        RunDirectory(other, "validate", CHECK).claim(cfg)
    assert _files(other) == before  # no .lock either


def test_an_attempt_records_how_it_ended(tmp_path):
    cfg = load_config(None)
    path = tmp_path / "run"
    with RunDirectory(path, "validate", CHECK).claim(cfg) as run:
        assert run.status is None
        ts = run.begin(cfg, 1, "20261205_000000", strategy="simple")
        assert run.status is Status.RUNNING and run.attempt == 1 and ts == "20261205_000000"
        run.end(Status.COMPLETED, samples=3)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["status"] == "COMPLETED" and manifest["command"] == "validate" and manifest["hsd_version"]
    assert to_dict(load_config(path / "config.yaml")) == to_dict(cfg)

    for exc, status in ((KeyboardInterrupt(), "INTERRUPTED"), (ValueError("boom"), "FAILED")):
        with pytest.raises(type(exc)):
            with RunDirectory(path, "validate", CHECK).claim(cfg) as run:
                assert run.begin(cfg, 1, "20991231_000000") == "20261205_000000"  # the first attempt's ts
                raise exc
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["status"] == status and manifest["samples"] == 3
    assert manifest["attempt"] == 3 and manifest["error"] == "ValueError: boom"
    with RunDirectory(path, "validate", CHECK).claim(cfg):  # the lock was released each time
        pass


def test_a_second_driver_is_refused_while_the_first_holds_the_lock(tmp_path):
    cfg = load_config(None)
    with RunDirectory(tmp_path / "run", "validate", CHECK).claim(cfg) as first:
        first.begin(cfg, 1, "20261205_000000")
        before = _files(tmp_path / "run")
        with pytest.raises(RunError, match="in use by pid"):
            RunDirectory(tmp_path / "run", "validate", CHECK).claim(cfg)
        assert _files(tmp_path / "run") == before


def test_a_directory_its_driver_is_writing_is_refused_as_in_use_not_as_foreign(tmp_path):
    """Two commands started at once on one directory: the one without the lock may look while the
    other is mid-write; the refusal names the driver, and only then the other reasons."""
    cfg, other = load_config(None), load_config(None, ["inference.max_new_tokens=5"])
    path = tmp_path / "run"
    with RunDirectory(path, "validate", CHECK).claim(cfg) as first:
        (path / "notes.txt").write_text("not hsd's")  # before the manifest: a folder hsd did not write
        with pytest.raises(RunError, match="in use by pid"):
            RunDirectory(path, "validate", CHECK).claim(cfg)
        first.begin(cfg, 1, "20261206_000000")
        with pytest.raises(RunError, match="in use by pid"):  # not "started with other settings"
            RunDirectory(path, "validate", CHECK).claim(other)
    with pytest.raises(RunError, match="started with other settings"):  # nobody drives it now
        RunDirectory(path, "validate", CHECK).claim(other)
