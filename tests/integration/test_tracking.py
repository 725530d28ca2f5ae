"""Trackers (hsd.tracking): what a user watches in TensorBoard / MLflow equals what hsd writes.

A tiny training (one process, ZeRO-2, a few steps) stopped after 3 steps and resumed from its
step-2 checkpoint (step 3's checkpoint removed, as a crash would leave it) logs to
TensorBoard (and MLflow's file store when mlflow is installed); the event files read back with
TensorBoard's own reader hold exactly ``train_log.jsonl``'s numbers, once per step even across
the resume.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess

import pytest

from _report_helpers import tensorboard_scalars as scalars
from _run_helpers import REPO, hsd_cmd, hsd_env, require_data
from hsd.runs import iter_jsonl
from hsd.tracking import installed
from hsd.training.loop import TRACKED

pytestmark = pytest.mark.integration

STEPS = 6
SETTINGS = {"max_train_samples": 16, "holdout_fraction": 0.01, "micro_batch_size": 4, "max_length": 192,
            "max_steps": STEPS, "eval_every": 2, "save_every": 2, "learning_rate": 0.003, "warmup_ratio": 0.0,
            "ds_config": "zero2"}


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)  # event files hold float32


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    if not installed("tensorboard"):
        pytest.skip("tensorboard is not installed (pip install tensorboard)")
    data = require_data()
    from hsd.config import load_config
    from hsd.training import ftdata

    root = tmp_path_factory.mktemp("tracking")
    trackers = ["tensorboard"] + (["mlflow"] if installed("mlflow") else [])
    cfg = root / "train.yaml"
    cfg.write_text(json.dumps({"experiment": "exp", "results_dir": str(root / "results"),
                               "data": {"dir": str(data), "subset": "canned_50_quick"},
                               "model": {"name_or_path": str(tiny_model_dir)},
                               "train": {**SETTINGS, "report_to": trackers},
                               "report": {"progress_every_s": 0.001}}))
    ft = ftdata.run(load_config(cfg), root / "ftdata")
    run = root / "results" / "exp" / "lora_r16"
    env = hsd_env(MLFLOW_TRACKING_URI="")
    outs = []
    for extra in (["train.stop_after_steps=3"], []):  # stopped after 3 steps, then resumed from step 2:
        if not extra:  # as after a crash past the last checkpoint, step 3's events must not show twice
            shutil.rmtree(run / "checkpoints" / "step_0000003")
        res = subprocess.run(hsd_cmd("train", "--config", str(cfg), "--data", str(ft), "--run-dir", str(run), *extra),
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        outs.append(res.stdout + res.stderr)
    return run, trackers, outs


def test_tensorboard_scalars_equal_train_log_once_per_step_across_a_resume(trained):
    run, _, _ = trained
    logged = scalars(run / "tracker")
    entries = list(iter_jsonl(run / "train_log.jsonl"))
    assert [e["step"] for e in entries if "loss" in e] == list(range(1, STEPS + 1))
    for key, tag in TRACKED.items():
        expected = [(e["step"], e[key]) for e in entries if e.get(key) is not None]
        assert expected, key
        got = logged[tag]
        assert [s for s, _ in got] == [s for s, _ in expected], (tag, got)  # the resume's purge: no step twice
        assert all(_close(g, x) for (_, g), (_, x) in zip(got, expected)), (tag, got, expected)
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_s",
            "train/peak_memory_gib", "eval/loss"} <= set(logged)


def test_the_runs_config_is_logged_as_hyperparameters(trained):
    run, _, _ = trained
    hparams = list((run / "tracker").glob("*/hparams.yml"))
    assert hparams, list((run / "tracker").iterdir())
    import yaml

    values = yaml.safe_load(hparams[-1].read_text())
    assert values["train.lora.r"] == 16 and values["experiment"] == "exp" and values["train.max_steps"] == STEPS


def test_training_prints_progress_with_loss_and_tokens_per_s(trained):
    _, _, outs = trained
    lines = [l for l in outs[1].splitlines() if l.startswith("train: ")]
    assert lines and f"/{STEPS} steps" in lines[-1] and "loss " in lines[-1] and "tokens/s " in lines[-1], outs[1][-2000:]


def test_mlflow_file_store_holds_the_same_losses(trained):
    run, trackers, _ = trained
    if "mlflow" not in trackers:
        pytest.skip("mlflow is not installed (pip install 'hsd[mlflow]')")
    import mlflow

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only with this
    client = mlflow.tracking.MlflowClient((run.parent / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("exp")
    found = client.search_runs([exp.experiment_id])
    assert [r.info.run_name for r in found].count(run.name) >= 1
    history = {}
    for r in found:
        history.update({m.step: m.value for m in client.get_metric_history(r.info.run_id, "train/loss")})
    expected = {e["step"]: e["loss"] for e in iter_jsonl(run / "train_log.jsonl") if "loss" in e}
    assert sorted(history) == sorted(expected)
    assert all(_close(history[s], expected[s]) for s in expected)
