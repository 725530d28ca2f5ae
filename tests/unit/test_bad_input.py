"""Every bad input in tests/bad_inputs.py: one clear error line, exit 2, no existing file changed.

Inputs that are valid but unusual (a BOM, CRLF line ends, labels in upper case) must load and
run. ``hsd validate`` runs in this process through ``hsd.cli.main`` (what the console script
calls); ``hsd train`` runs as a subprocess, because Accelerate's process state is global.
"""

from __future__ import annotations

import json
import logging
import subprocess

import pytest

from _run_helpers import REPO, hsd_cmd, hsd_env, snapshot
from bad_inputs import CASES, BadInput
from scenario import Scenario
from hsd.cli import main

pytestmark = pytest.mark.faults


def run_train(argv: list[str]) -> tuple[int, str]:
    """``hsd train`` as a user starts it on one machine (no launcher)."""
    res = subprocess.run(hsd_cmd(*argv), capture_output=True, text=True, env=hsd_env(), cwd=REPO, timeout=600)
    return res.returncode, res.stderr


def _params() -> list:
    """Cases that load the model for real or launch training are integration tests too."""
    return [pytest.param(c, id=c.id, marks=[pytest.mark.integration] if c.area == "training" or c.exit_code == 0 else [])
            for c in CASES]


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: BadInput, tiny_model_dir, tmp_path, capsys, caplog, monkeypatch):
    sc = Scenario.create(tmp_path, tiny_model_dir)
    argv = case.edit(sc)
    monkeypatch.chdir(tmp_path)  # a stray relative write would land here and show in the snapshot
    before = snapshot(tmp_path)
    caplog.set_level(logging.WARNING, logger="hsd")
    if argv[0] == "train":
        code, stderr = run_train(argv)
    else:
        code = main(argv)
        stderr = capsys.readouterr().err
    after = snapshot(tmp_path)

    assert code == case.exit_code, f"exit {code}, expected {case.exit_code}; stderr:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"existing files changed or removed: {changed}"
    if case.exit_code == 0:
        _check_accepted(case, sc, caplog)
        return
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one 'error:' line, got:\n{stderr[-3000:]}"
    for word in case.keywords:
        assert word in errors[0], f"{word!r} not in: {errors[0]}"
    if not case.new_files:
        assert sorted(after) == sorted(before), f"new files: {sorted(set(after) - set(before))}"
    assert not (tmp_path / "pwned").exists()


def _check_accepted(case: BadInput, sc: Scenario, caplog) -> None:
    """The unusual-but-valid input ran: every sample once, labels normalised, warning logged."""
    runs = [p for p in (sc.results_dir / "exp").iterdir() if p.name != "earlier"]
    assert len(runs) == 1, runs
    (merged,) = runs[0].glob("intermediate_results_*.jsonl")
    records = [json.loads(line) for line in merged.read_text().splitlines()]
    expected = {r["original_id"]: r for r in Scenario.create(sc.root / "fresh", sc.model_dir).rows()}
    assert sorted(r["sample_id"] for r in records) == sorted(expected)
    for rec in records:
        source = expected[rec["sample_id"]]
        assert (rec["text"], rec["true_label"], rec["target_group"]) == \
            (source["text"], source["label_binary"], source["target_group_norm"])
    logged = " ".join(r.getMessage() for r in caplog.records)
    for word in case.log_keywords:
        assert word in logged, f"{word!r} not logged: {logged[:2000]}"


def test_table_has_every_area_and_enough_cases():
    areas = {c.area for c in CASES}
    assert {"data", "template", "config", "model", "adapter", "training", "results"} <= areas
    assert len([c for c in CASES if c.exit_code != 0]) >= 15
    assert len({c.id for c in CASES}) == len(CASES)
