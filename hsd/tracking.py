"""Experiment trackers — TensorBoard, Weights & Biases, MLflow, trackio — through Accelerate's tracker classes.

Users watch runs where they already live: ``train.report_to`` (and ``report.report_to`` for
validations and comparisons) names the trackers. Training hands them to its Accelerator
(``log_with`` / ``init_trackers`` / ``log``); a validation job has no Accelerator (its
backends own the process group), so it starts the same Accelerate tracker classes itself.

One layout makes a sweep's curves overlay: every run logs into its own directory
(``<run>/tracker`` for TensorBoard, ``<run>/tracker/wandb`` for W&B's local files) and is
named by the run directory, grouped by the experiment: W&B project and group, MLflow
experiment and trackio project are the experiment's name, so ``tensorboard --logdir
results/<experiment>`` or the W&B/MLflow experiment page lines every run of it up.

A tracker is an observer: a missing package, bad settings or a server that is down is one
warning naming the tracker and the fix, and the run goes on without it. Only the main process
logs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
DIR = "tracker"  # <run>/tracker: TensorBoard's event files, W&B's offline files
# What to install when a named tracker's package is missing.
INSTALL = {"tensorboard": "pip install tensorboard", "wandb": "pip install 'hsd[wandb]'",
           "mlflow": "pip install 'hsd[mlflow]'", "trackio": "pip install 'hsd[trackio]'"}


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def resolve(report_to: Optional[Sequence[str]]) -> list[str]:
    """The trackers asked for; ``None`` (the default) is TensorBoard when it is installed, else none."""
    if report_to is None:
        return ["tensorboard"] if installed("tensorboard") else []
    return list(dict.fromkeys(report_to))


def report_trackers(cfg: Any) -> list[str]:
    """A validation's or comparison's trackers: ``report.report_to``, else the same as ``train.report_to``."""
    return resolve(cfg.report.report_to if cfg.report.report_to is not None else cfg.train.report_to)


def warn(message: str) -> None:
    """A tracker problem: one line on stderr, never an exception."""
    print(f"warning: tracking: {message}", file=sys.stderr, flush=True)


def available(names: Sequence[str]) -> list[str]:
    """``names`` whose package is installed; the others get one warning (Accelerate would drop them silently)."""
    missing = [n for n in names if not installed(n)]
    if missing:
        warn("not installed, so not logging to: " + "; ".join(f"{n} ({INSTALL[n]})" for n in missing))
    return [n for n in names if n not in missing]


@dataclass(frozen=True)
class RunInfo:
    """Who logs: the run directory (named after it), its experiment (the group), and the step from
    which TensorBoard drops what earlier writers logged: a resumed training's checkpoint step + 1
    (the old attempt's events past its checkpoint), 0 for a report written again (its old values)."""

    path: Path
    experiment: str
    purge_step: Optional[int] = None

    @property
    def name(self) -> str:
        return self.path.name


def tracker_args(name: str, info: RunInfo) -> tuple[str, dict[str, Any]]:
    """(Accelerate's ``project_name``, the tracker's init kwargs) for one tracker of one run.

    TensorBoard writes to ``<logging_dir>/<project_name>``: with the run directory as logging dir
    and ``tracker`` as project the events land in ``<run>/tracker``. W&B resumes the same run
    on a restart (its id is derived from the run directory). MLflow uses ``MLFLOW_TRACKING_URI``
    when set, else a file store beside the runs (``results/<experiment>/mlruns``).
    """
    if name == "tensorboard":
        return DIR, {} if info.purge_step is None else {"purge_step": info.purge_step}
    if name == "wandb":
        (info.path / DIR).mkdir(parents=True, exist_ok=True)
        run_id = hashlib.sha256(str(info.path.resolve()).encode()).hexdigest()[:16]
        return info.experiment, {"name": info.name, "group": info.experiment, "dir": str(info.path / DIR),
                                 "id": run_id, "resume": "allow"}
    if name == "mlflow":
        _mlflow_uri(info)
        return info.experiment, {"run_name": info.name}
    return info.experiment, {"name": info.name, "group": info.experiment}  # trackio


def _mlflow_uri(info: RunInfo) -> None:
    """No ``MLFLOW_TRACKING_URI``: a file store in the experiment directory, which needs no server
    and no database package (MLflow 3 asks for ``MLFLOW_ALLOW_FILE_STORE`` to accept one)."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri((info.path.parent / "mlruns").resolve().as_uri())


def hyperparameters(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config flattened to ``section.key`` scalars (lists and None as text), as trackers take them."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        where = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(hyperparameters(value, f"{where}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[where] = value
        else:
            flat[where] = str(value)  # None, lists: TensorBoard's hparams take scalars and text only
    return flat


def scalars(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values a tracker can log: numbers (booleans as 0/1) and text; None (not computed) is left out."""
    return {k: float(v) if isinstance(v, bool) else v for k, v in values.items() if isinstance(v, (int, float, str))}


class Tracking:
    """The started trackers of one run; ``log`` never raises (a failing tracker is dropped with a warning)."""

    def __init__(self, trackers: list[Any], log_fn: Optional[Callable[..., None]] = None) -> None:
        self.trackers = trackers
        self._log_fn = log_fn

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.trackers]

    def log(self, values: Mapping[str, Any], step: Optional[int] = None) -> None:
        values = scalars(values)
        for tracker in list(self.trackers):
            try:
                tracker.log(values, step=step)
            except Exception as exc:  # an observer must not stop a training
                warn(f"{tracker.name} failed to log ({type(exc).__name__}: {exc}); no longer logging to it")
                self.trackers.remove(tracker)

    def finish(self) -> None:
        for tracker in self.trackers:
            try:
                tracker.finish()
            except Exception as exc:
                warn(f"{tracker.name} failed to finish ({type(exc).__name__}: {exc})")
        self.trackers = []


def start_with_accelerator(accelerator: Any, info: RunInfo, config: Mapping[str, Any]) -> Tracking:
    """Training: ``init_trackers`` for each of the Accelerator's ``log_with`` trackers, one at a
    time, so one that fails to start (bad settings, no server) costs only itself."""
    if not accelerator.is_main_process:
        return Tracking([])
    names, live, failed = [str(n) for n in accelerator.log_with], [], []
    for name in names:
        accelerator.log_with, accelerator.trackers = [name], []
        try:
            project, kwargs = tracker_args(name, info)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                accelerator.init_trackers(project, hyperparameters(config), {name: kwargs})
            live += accelerator.trackers
        except Exception as exc:
            failed.append(f"{name} ({type(exc).__name__}: {exc})")
    accelerator.log_with, accelerator.trackers = [t.name for t in live], live
    if failed:
        warn("could not start, so not logging to: " + "; ".join(failed))
    return Tracking(live)


def start(names: Sequence[str], info: RunInfo, config: Mapping[str, Any]) -> Tracking:
    """Validation and comparison (one process, no Accelerator): Accelerate's tracker classes, started here."""
    from accelerate.state import PartialState
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    live, failed = [], []
    for name in available(names):
        try:
            PartialState()  # the tracker classes log through accelerate's logger, which needs its state
            project, kwargs = tracker_args(name, info)
            cls = LOGGER_TYPE_TO_CLASS[name]
            tracker = cls(project, info.path, **kwargs) if cls.requires_logging_directory else cls(project, **kwargs)
            tracker.main_process_only = False  # the caller is the one process that logs
            tracker.start()
            tracker.store_init_configuration(hyperparameters(config))
            live.append(tracker)
        except Exception as exc:
            failed.append(f"{name} ({type(exc).__name__}: {exc})")
    if failed:
        warn("could not start, so not logging to: " + "; ".join(failed))
    return Tracking(live)
