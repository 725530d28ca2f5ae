"""``python -m hsd.commands.demo`` (``make demo``): the whole chain on the tiny model, on this machine.

1. builds the tiny gpt-oss (random weights, harmony tokenizer) into ``<cache>/tiny-model``
   (:func:`hsd.paths.cache_root`: a checkout's ``.cache/``) unless it is there, 2. links the prepared dataset (``hsd data``), 3. runs ``hsd submit pipeline
   --config configs/demo.yaml`` on the local executor — baseline validation, ftdata, LoRA
   training, post-FT validation, collate — and ends with the comparison's short table (each
   run's answered rate, F1, MCC, the TF-IDF reference, the success-criterion verdict), the
   index page of every demo experiment (``hsd report index``) and the report's path.
Each run goes to a new experiment directory, so the demo can be run again at any time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hsd.config import load_config, replace
from hsd.errors import HsdError
from hsd.paths import cache_root, checkout_root, package_data
from hsd.runs import timestamp

CONFIG = package_data("configs", "demo.yaml")  # shipped in the wheel; the checkout's configs/demo.yaml links here


def project_path(name: str) -> Path:
    """A relative path of demo.yaml, wherever the demo is started from: under ``.cache/`` means
    under the cache root; anything else is under the checkout (an installed hsd: the working
    directory). An absolute path (an override) stays as it is."""
    path = Path(name)
    if path.parts[:1] == (".cache",):
        return cache_root().joinpath(*path.parts[1:])
    return (checkout_root() or Path.cwd()) / path


def ensure_tiny_model(path: Path) -> None:
    """Build the tiny model unless this version of it is there; an older one (another tokenizer,
    say) is replaced — only a directory hsd built (it has ``hsd_tiny.json``) is ever deleted."""
    import shutil

    from hsd.models.tiny import build_tiny, is_current

    if is_current(path):
        return
    if (path / "hsd_tiny.json").exists():
        shutil.rmtree(path)
    print(f"demo: building the tiny model into {path}", flush=True)
    build_tiny(path)


def ensure_data() -> None:
    from hsd.commands.data import main as data_main

    if data_main(argparse.Namespace(source=None, dest=None, copy=False)) != 0:
        raise HsdError("the dataset is not in place: see the message above (make data)")


def run(overrides: list[str]) -> Path:
    from jobs.pipeline import submit_command

    cfg = load_config(CONFIG, overrides)
    cfg = replace(cfg, **{"experiment": f"{cfg.experiment}_{timestamp()}",
                          "results_dir": str(project_path(cfg.results_dir)),
                          "model.name_or_path": str(project_path(cfg.model.name_or_path))})
    ensure_tiny_model(Path(cfg.model.name_or_path))
    ensure_data()
    return submit_command("pipeline", cfg)


def print_index(exp: Path) -> None:
    """The page of every experiment beside this one (``hsd report index``) and the curves' command."""
    from hsd.reporting.index_html import write_index

    print(f"demo: every experiment under {exp.parent}: {write_index(exp.parent)}")
    print(f"demo: training curves: tensorboard --logdir {exp}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from hsd.commands.submit import print_summary
    from jobs.interrupt import Interrupted
    from jobs.pipeline import StagesFailed

    overrides = list(sys.argv[1:] if argv is None else argv)
    start = time.time()
    try:
        exp = run(overrides)
    except StagesFailed as exc:  # what finished is still compared: show it before the error
        print_summary(exc.exp)
        print_index(exc.exp)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except HsdError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Interrupted as exc:  # Ctrl-C / SIGTERM: the running job was stopped and recorded (jobs.interrupt)
        print(exc.message, file=sys.stderr, flush=True)
        return exc.exit_code
    print(f"demo: done in {time.time() - start:.0f} s")
    print_summary(exp)
    print_index(exp)
    print(exp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
