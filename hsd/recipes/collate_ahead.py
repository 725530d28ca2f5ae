"""A baseline's own collation, prepared by a second process while the model generates.

``hsd validate`` of a baseline ends by collating the run (:func:`hsd.commands.validate.baseline_metrics`):
the report stack's imports (pandas, scikit-learn, SciPy, matplotlib), the TF-IDF reference fitted on
the train split, three references scored with bootstrap intervals and four plots — 3.1–4.9 s after
the run's last log line on an H100 host (BENCHMARKS.md, issue 29 fifth session), of a ~25 s GPU job.
None of it depends on the model's answers, and a thread cannot overlap it with generation (the
decode loop needs the GIL between its kernels). So the command starts this module as a child
process before the run: it imports, then fits and scores the references on the selected samples (:class:`hsd.reporting.refcache.Prepared`) and waits. When the run
is complete the parent sends the run directory; the child collates it with :func:`hsd.recipes.collate.collate_run`
(the same code and files as ``hsd collate``; what was prepared is used only where it equals what the
run needs; the plots drawn by forked copies of itself, side by side: :func:`hsd.reporting.plots.forked_saves`)
and answers with one JSON line. Nothing is written before that line of the parent's.

Protocol (the child's stdin and stdout; its stderr is the parent's):
parent -> ``{config as JSON}\\n``, later ``RUN_DIR\\n`` or end of input (nothing to collate: exit);
child -> ``{"written": true, "prepared": USED}`` or ``{"error": "..."}`` (a collation error, e.g. no train split).
A child that dies, or answers anything else, leaves the parent to collate in-process, as before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from hsd.config import Config
from hsd.errors import HsdError
from hsd.runs import RunError


class CollateAhead:
    """The parent's handle on the child process."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        self.prepared_used = False  # after collate(): the references came from what the child prepared

    @classmethod
    def start(cls, cfg: Config) -> Optional["CollateAhead"]:
        """The child, started with ``cfg``; None when ``report.collate_ahead`` is off or it cannot start."""
        from hsd.config import to_dict

        if not wanted(cfg):
            return None
        try:
            proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    env=_child_env(), text=True, encoding="utf-8")
            proc.stdin.write(json.dumps(to_dict(cfg)) + "\n")
            proc.stdin.flush()
        except OSError:
            return None  # the parent collates in-process, as without the child
        return cls(proc)

    def collate(self, path: Path) -> bool:
        """Have the child collate ``path``: True once written; False if the child is gone (the caller
        collates in-process). A collation error is raised here as the :class:`RunError` it was."""
        try:
            self._proc.stdin.write(f"{Path(path).resolve()}\n")
            self._proc.stdin.close()
            out = self._proc.stdout.readline()  # the answer; the child then ends at once (os._exit)
            self._proc.wait()
        except (OSError, ValueError):
            self.cancel()
            return False
        except BaseException:  # Ctrl-C while waiting: the child is in the same process group, but make sure
            self.cancel()
            raise
        answer = _answer(out)
        if answer.get("written") is True:
            self.prepared_used = answer.get("prepared") is True
            return True
        if isinstance(answer.get("error"), str):
            raise RunError(answer["error"])
        return False

    def cancel(self) -> None:
        """End the child now (until it is handed a run, it has written nothing)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


def wanted(cfg: Config) -> bool:
    """``report.collate_ahead``, where None means: when the model runs on a GPU (on a CPU the tiny
    models generate in seconds, and a second interpreter's imports would cost more than they hide)."""
    if cfg.report.collate_ahead is not None:
        return cfg.report.collate_ahead
    from hsd.models.loader import resolve_device

    try:
        return resolve_device(cfg.model).startswith("cuda")
    except HsdError:
        return False  # the run itself reports it


def _child_env() -> dict[str, str]:
    """This environment, with the directory this ``hsd`` was imported from on ``PYTHONPATH`` (a
    checkout run from elsewhere) unless it is a site-packages directory, which the child has anyway
    and which must not go before the standard library."""
    import site

    root = str(Path(__file__).resolve().parents[2])
    sites = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if root in sites:
        return dict(os.environ)
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))


def _answer(line: str) -> dict[str, Any]:
    """The child's one-line answer; {} for anything else (the caller then collates in-process)."""
    try:
        answer = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return answer if isinstance(answer, dict) else {}


def prepare(cfg: Config) -> Any:
    """The references fitted and scored on ``cfg``'s selected samples; None where that fails (the
    collation then does it, and reports the error if it has one)."""
    from hsd.data import resolve_data_dir, select
    from hsd.metrics.references import stand_in_records
    from hsd.recipes import collate  # noqa: F401  (the whole report stack's imports, here rather than after the run)
    from hsd.reporting.refcache import Prepared

    _first_figure()
    try:
        records = stand_in_records(select(cfg.data).samples)
        return Prepared.of(records, resolve_data_dir(cfg.data.dir), cfg.report)
    except (HsdError, OSError):
        return None


def _first_figure() -> None:
    """Draw one small figure (title, ticks, legend) to memory: a process's first text drawn by
    matplotlib loads the font and fills its caches (on an H100 host's profile of the in-process
    collation, its first 28 text measurements took 0.43 s); done here, during the run, the forked
    processes that draw the run's plots inherit them."""
    import io

    from hsd.reporting import plots  # the Agg backend, as the reports draw

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1], "o-", label="warm-up")
    ax.set_title("warm-up")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(io.BytesIO(), format="png", dpi=plots.DPI)
    plt.close(fig)


def child() -> int:
    """The child's side of the protocol (``python -m hsd.recipes.collate_ahead``)."""
    from hsd.config import from_dict
    from hsd.noise import quiet_known_noise

    quiet_known_noise()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends this process
    first = sys.stdin.readline()
    if not first:
        return 0
    cfg = from_dict(json.loads(first), source="<hsd validate>")
    prepared = prepare(cfg)
    line = sys.stdin.readline().strip()
    if not line:  # the run failed, was interrupted or had nothing new: nothing to collate
        return 0
    from hsd.recipes.collate import collate_run
    from hsd.reporting import plots
    from hsd.reporting.refcache import data_dir_for

    try:
        with plots.forked_saves():  # this process has no threads of its own and no GPU: fork is safe here
            run = collate_run(Path(line), cfg.data.dir, merge=False, prepared=prepared)
        used = prepared is not None and prepared.predictions_for(run, data_dir_for(run, cfg.data.dir)) is not None
        answer: dict[str, Any] = {"written": True, "prepared": used}
    except (HsdError, OSError) as exc:
        answer = {"error": str(exc)}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    code = child()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every file is written (atomically) and the answer sent: skip the interpreter's teardown of
    # pandas, SciPy and matplotlib (~1 s here), which the parent would otherwise wait for.
    os._exit(code)
