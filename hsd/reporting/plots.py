"""PNG plots of a run or a comparison (matplotlib, Agg: cluster nodes have no display).

Each function draws from the summary dicts of :mod:`hsd.metrics.summary` only, so a plot
shows exactly the numbers the tables beside it show. Files are written atomically.
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110
TITLES = {"f1": "F1", "mcc": "MCC", "accuracy": "accuracy", "eod": "equalized-odds difference"}
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if _FORKED is not None:  # drawn by a forked process; finish_saves() waits for it
        try:
            _FORKED.append(_Forked.start(fig, path))
            return path
        except OSError:  # no process to spare (ulimit, memory): drawn here
            pass
    _draw(fig, path)
    plt.close(fig)
    return path


def _draw(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=DPI)
    tmp.replace(path)


# Figures being drawn by forked processes, between forked_saves() and finish_saves(); None: draw here.
_FORKED: list["_Forked"] | None = None


@dataclass
class _Forked:
    fig: Any
    path: Path
    pid: int

    @classmethod
    def start(cls, fig: Any, path: Path) -> "_Forked":
        pid = os.fork()
        if pid == 0:  # the copy draws and leaves at once, without the parent's atexit handlers
            code = 1
            try:
                _draw(fig, path)
                code = 0
            finally:
                os._exit(code)
        return cls(fig, path, pid)

    def finish(self) -> None:
        """Wait for the drawing process; if it failed, draw the figure here (raising what that raises)."""
        _, status = os.waitpid(self.pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            _draw(self.fig, self.path)
        plt.close(self.fig)


@contextmanager
def forked_saves() -> Iterator[None]:
    """Within: every plot is drawn and written by a forked copy of this process, all at once, and
    :func:`finish_saves` (which :func:`hsd.reporting.output.write_report` calls before it reads them)
    waits for them. Four plots take ~0.8 s one after the other; this is for the process that writes a
    baseline's reports after its run (:mod:`hsd.recipes.collate_ahead`), which has no threads of its
    own and no GPU — fork is not safe in general (CUDA, threads), so it is off everywhere else."""
    global _FORKED
    if _FORKED is not None or not sys.platform.startswith("linux"):  # macOS: fork is unsafe with its frameworks
        yield
        return
    _FORKED = []
    try:
        yield
    finally:
        try:
            finish_saves()
        finally:
            _FORKED = None


def finish_saves() -> None:
    """Every plot started by :func:`forked_saves` is on disk (no-op when none is pending). Each
    drawing process is waited for even when one raised; the first error is raised after."""
    error = None
    while _FORKED:
        try:
            _FORKED.pop(0).finish()
        except Exception as exc:  # noqa: BLE001  (raised below, once every process is reaped)
            error = error or exc
    if error is not None:
        raise error


def confusion(matrix: Mapping[str, Mapping[str, int]], title: str, path: Path) -> Path:
    """Counts of true label (rows) x prediction (columns, ``unknown`` included)."""
    rows, cols = list(matrix), list(next(iter(matrix.values())))
    counts = np.array([[matrix[r][c] for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    ax.imshow(counts, cmap="Blues")
    for i in range(len(rows)):
        for j in range(len(cols)):
            dark = counts[i, j] > counts.max() / 2
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _err(rows: Sequence[Mapping[str, Any]], rate: str) -> tuple[np.ndarray, np.ndarray]:
    est = np.array([_nan(r[rate]) for r in rows])
    low = np.array([_nan(r[f"{rate}_low"]) for r in rows])
    high = np.array([_nan(r[f"{rate}_high"]) for r in rows])
    return est, np.nan_to_num(np.vstack([est - low, high - est]), nan=0.0)


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def group_rates(series: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], path: Path,
                level: float = 0.95) -> Path:
    """Per-group FPR and FNR bars, one bar per series (run or reference), with interval whiskers."""
    groups = [r["group"] for r in series[0][1]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    width = 0.8 / len(series)
    for ax, rate, name in zip(axes, ("fpr", "fnr"), ("false positive rate (normal flagged as hate)",
                                                     "false negative rate (hate missed)")):
        for k, (label, rows) in enumerate(series):
            by_group = {r["group"]: r for r in rows}
            ordered = [by_group[g] for g in groups]
            est, err = _err(ordered, rate)
            x = np.arange(len(groups)) + (k - (len(series) - 1) / 2) * width
            ax.bar(x, est, width, yerr=err, capsize=3, label=label, color=COLORS[k % len(COLORS)])
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(f"rate ({level:.0%} bootstrap interval)")
    axes[1].legend(fontsize=8)
    return _save(fig, path)


def forest(rows: Sequence[tuple[str, Mapping[str, Mapping[str, float]]]], metrics: Sequence[str],
           path: Path, title: str = "", zero_line: bool = False) -> Path:
    """Point estimate and interval per row (classifier or difference), one panel per metric."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.45 * len(rows) + 1.4),
                             sharey=True, squeeze=False)
    labels = [label for label, _ in rows]
    y = np.arange(len(rows))[::-1]
    for ax, metric in zip(axes[0], metrics):
        for yi, (_, ivs) in zip(y, rows):
            iv = ivs.get(metric)
            if iv is None or iv["estimate"] is None:
                continue
            lo, hi = (iv["low"], iv["high"]) if iv["low"] is not None else (iv["estimate"],) * 2
            ax.plot([lo, hi], [yi, yi], color="#444", linewidth=2)
            ax.plot([iv["estimate"]], [yi], "o", color=COLORS[0])
        if zero_line:
            ax.axvline(0, color="#d62728", linewidth=1, linestyle="--")
        ax.set_title(TITLES.get(metric, metric), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, labels)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def loss_curve(log_path: Path, path: Path) -> Path:
    """The linked training run's curve, drawn by the trainer's own plotting code."""
    from hsd.training.plots import loss_curve as draw

    path.parent.mkdir(parents=True, exist_ok=True)
    return draw(log_path, path)


def reliability(series: Sequence[tuple[str, Mapping[str, Any]]], path: Path) -> Path:
    """Reliability diagram: per panel (all samples, then each group) the fraction of hate against
    the mean P(hate) of each non-empty bin, one line per series (run or reference); the diagonal is
    perfect calibration. ``series``: (label, calibration block of :mod:`hsd.metrics.calibration`)."""
    panels = ["all", *series[0][1]["groups"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        ax.plot([0, 1], [0, 1], color="#999", linewidth=1, linestyle="--")
        for k, (label, cal) in enumerate(series):
            rel = cal["overall"] if panel == "all" else cal["groups"].get(panel)
            if not rel or not rel["bins"]:
                continue
            x = [b["mean_p_hate"] for b in rel["bins"]]
            y = [b["fraction_hate"] for b in rel["bins"]]
            ax.plot(x, y, "o-", color=COLORS[k % len(COLORS)], markersize=4,
                    label=f"{label} (ECE {rel['ece']:.3f})")
        ax.set_xlim(-0.03, 1.03)  # a margin: bins at exactly 0 or 1 stay visible
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("mean P(hate) in bin")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel("fraction hate in bin")
    return _save(fig, path)
