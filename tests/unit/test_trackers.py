"""hsd.tracking: trackers are observers — a missing or broken one is one warning, never an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsd import tracking


class _Broken:
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def log(self, values, step=None):
        self.calls += 1
        raise ConnectionError("server gone")

    def finish(self):
        pass


def _warnings(capsys) -> list[str]:
    return [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning: tracking:")]


def test_default_is_tensorboard_when_installed_and_an_empty_list_is_none() -> None:
    assert tracking.resolve(None) == (["tensorboard"] if tracking.installed("tensorboard") else [])
    assert tracking.resolve(()) == []
    assert tracking.resolve(("mlflow", "tensorboard", "mlflow")) == ["mlflow", "tensorboard"]


def test_a_tracker_that_cannot_start_is_one_warning(tmp_path: Path, capsys) -> None:
    if not tracking.installed("tensorboard"):
        pytest.skip("tensorboard is not installed")
    blocker = tmp_path / "run"
    blocker.write_text("a file where the run directory should be")  # TensorBoard cannot create run/tracker
    started = tracking.start(["tensorboard"], tracking.RunInfo(blocker, "exp"), {"a": 1})
    assert started.names == []
    started.log({"x": 1.0}, step=1)  # logging to nothing is fine
    (line,) = _warnings(capsys)
    assert "could not start, so not logging to: tensorboard" in line


def test_a_missing_package_is_one_warning_naming_the_extra(capsys) -> None:
    missing = [n for n in ("wandb", "mlflow", "trackio") if not tracking.installed(n)]
    if not missing:
        pytest.skip("every optional tracker is installed")
    assert tracking.available(missing) == []
    (line,) = _warnings(capsys)
    assert f"pip install 'hsd[{missing[0]}]'" in line


def test_a_tracker_that_fails_to_log_is_dropped_after_one_warning(capsys) -> None:
    broken = _Broken()
    tracked = tracking.Tracking([broken])
    tracked.log({"loss": 1.0}, step=1)
    tracked.log({"loss": 0.9}, step=2)
    assert broken.calls == 1 and tracked.names == []
    (line,) = _warnings(capsys)
    assert "broken failed to log (ConnectionError: server gone)" in line


def test_hyperparameters_are_flat_scalars() -> None:
    flat = tracking.hyperparameters({"train": {"lora": {"r": 8, "target_modules": ["q", "k"]}, "max_steps": None},
                                     "experiment": "e"})
    assert flat == {"train.lora.r": 8, "train.lora.target_modules": "['q', 'k']", "train.max_steps": "None",
                    "experiment": "e"}
    assert tracking.scalars({"a": True, "b": None, "c": "text", "d": 2}) == {"a": 1.0, "c": "text", "d": 2}


@pytest.mark.parametrize("name,env", [("wandb", {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}),
                                      ("trackio", {}), ("mlflow", {"MLFLOW_TRACKING_URI": ""})])
def test_optional_trackers_log_offline_when_installed(name, env, tmp_path: Path, monkeypatch, capsys) -> None:
    """W&B offline, trackio's local store, MLflow's file store beside the runs: started, logged to
    and finished without a warning."""
    if not tracking.installed(name):
        pytest.skip(f"{name} is not installed (pip install 'hsd[{name}]')")
    for key, value in {**env, "TRACKIO_DIR": str(tmp_path / "trackio"), "WANDB_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    run = tmp_path / "exp" / "run1"
    run.mkdir(parents=True)
    started = tracking.start([name], tracking.RunInfo(run, "exp"), {"train": {"lora": {"r": 8}}})
    assert started.names == [name], capsys.readouterr().err
    started.log({"train/loss": 1.5}, step=1)
    started.finish()
    assert _warnings(capsys) == []
    if name == "wandb":
        assert any((run / "tracker" / "wandb").iterdir())  # the offline run, for `wandb sync`
    if name == "mlflow":
        assert (tmp_path / "exp" / "mlruns").is_dir()
