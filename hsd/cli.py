"""``hsd <command>``: the project's only argument parser.

Each command is declared here (its arguments) and implemented elsewhere, named lazily as
``"module:function"`` so ``hsd --help`` imports no torch. A handler receives the parsed
``argparse.Namespace`` and returns an exit code (or None for 0). User-fixable problems raise
:class:`hsd.errors.HsdError`; they are printed as one ``error:`` line and exit with code 2.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import signal
import sys
from typing import Callable, Optional

from hsd.errors import HsdError
from hsd.noise import quiet_known_noise
from hsd.paths import use_bytecode_cache
from hsd.rundir import SIGTERM_MESSAGE, interrupt_on_sigterm


def _config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--config", "-c", required=required, help="experiment YAML (see configs/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. inference.batch_size=8")


def _validate(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--run-dir", default=None,
                   help="run directory to create or resume (default: results/<experiment>/<run_name or validate_<strategy>_<ts>>)")


def _model(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="model_command", required=True)
    tiny = sub.add_parser("tiny", help="build a tiny GptOss model + harmony tokenizer for tests and the demo")
    tiny.add_argument("--out", required=True, help="output directory")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--force", action="store_true", help="overwrite an existing directory")
    tiny.add_argument("--format", choices=("safetensors", "mxfp4"), default="safetensors",
                      help="weights as saved by save_pretrained, or as gpt-oss's release: MXFP4 experts, bf16 rest")
    tok = sub.add_parser("tokenizer", help="build gpt-oss's tokenizer (o200k_harmony) offline from the installed "
                                           "quicktok-v1 package into the project cache; prints its directory")
    tok.add_argument("--cache-dir", default=None, help="cache root (default: $HSD_CACHE_DIR, else the checkout's .cache/, else ~/.cache/hsd)")


def _import_legacy(p: argparse.ArgumentParser) -> None:
    p.add_argument("old_run_dir", help="an old pipeline run directory (intermediate_results_*.jsonl)")
    p.add_argument("--out", required=True, help="new hsd run directory (must not exist)")
    p.add_argument("--keep-predictions", action="store_true",
                   help="keep the old CSV predictions instead of re-parsing raw responses")


def _data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default=None, help="prepared data to link (default: ../shared/data)")
    p.add_argument("--dest", default=None, help="data directory (default: $HSD_DATA_DIR or data/)")
    p.add_argument("--copy", action="store_true", help="copy instead of symlink")


def _ftdata(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--out", default=None, help="output directory (default: results/<experiment>/ftdata_<ts>)")


def _train(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--data", default=None, help="hsd ftdata output (default: write it into <run>/ftdata)")
    p.add_argument("--run-dir", default=None,
                   help="run directory to create or resume (default: results/<experiment>/<run_name or train_<format>_<ts>>)")


def _merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", required=True, help="LoRA adapter directory (<train run>/adapter)")
    p.add_argument("--out", required=True, help="output directory for the merged model (must not exist)")
    p.add_argument("--base", default=None, help="base model (default: the one recorded in the adapter)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="dtype of the merge and the saved weights (auto: float32; bfloat16 halves the memory of a 20B merge)")


def _collate(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="RUN_OR_EXPERIMENT_DIR",
                   help="validation run directories, or experiment directories holding them")
    p.add_argument("--data-dir", default=None,
                   help="dataset directory for the TF-IDF reference's train split (default: the run's data.dir, "
                        "$HSD_DATA_DIR or data/)")


def _report(p: argparse.ArgumentParser) -> None:
    _collate(p)
    p.add_argument("--out", default=None, help="hsd report index: the page to write (default: RESULTS_DIR/index.html)")


def _compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run directories over the same sample ids; "
                                                          "differences are against the first")
    p.add_argument("--out", default=None, help="output directory (default: <the runs' directory>/comparison)")
    p.add_argument("--data-dir", default=None, help="dataset directory for the TF-IDF reference (as in collate)")


# name -> (help, argument setup, "module:function")
def _submit(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="submit_command", required=True)
    for name, help_text in (("baseline", "baseline validation (rich prompt), then its report"),
                            ("pipeline", "baseline + ftdata -> train -> post-FT validation -> collate"),
                            ("sweep", "sweep.lora settings as a training job array, each validated, then collate")):
        _config_args(sub.add_parser(name, help=help_text, description=help_text))
    resume = sub.add_parser("resume", help="resubmit only the stages of an experiment that did not complete",
                            description="resubmit only the stages of an experiment that did not complete: "
                                        "finished runs are reused, partial ones resume (records, checkpoints)")
    resume.add_argument("experiment", help="the experiment directory `hsd submit` printed (or its name)")
    resume.add_argument("overrides", nargs="*", help="executor.* overrides only, e.g. executor.timeout_min=480")
    resume.add_argument("--results-dir", default="results", help="where to find an experiment given by name")


def _cancel(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="the experiment directory `hsd submit` printed (or its name)")
    p.add_argument("--results-dir", default="results", help="where to find an experiment given by name")


def _status(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment_dir", nargs="?", default=None,
                   help="an experiment directory (default: the newest under --results-dir)")
    p.add_argument("--results-dir", default="results", help="where to look for the newest experiment")
    p.add_argument("--watch", action="store_true", help="print the table again every --interval seconds until "
                                                          "every job has ended (Ctrl-C stops watching, not the jobs)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between two tables with --watch (default 10)")


def _show(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a validation run directory; or an experiment or comparison "
                                              "directory, with --run; or an experiment name (EXPERIMENT[/RUN])")
    p.add_argument("--results-dir", default="results", help="where to find an experiment given by name")
    p.add_argument("sample_id", metavar="SAMPLE_ID", help="the sample's id (sample_id in the records and CSVs)")
    p.add_argument("--run", dest="run_name", default=None, metavar="NAME",
                   help="which run of an experiment or comparison: its directory name (baseline, finetuned, ...) "
                        "or its role (baseline, fine-tuned)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--prompt-only", action="store_true",
                      help="write only the prompt, exactly the bytes the tokenizer was given (no newline added)")
    only.add_argument("--answer-only", action="store_true",
                      help="only the response and the answer (works on runs that stored no prompts)")
    p.add_argument("--json", action="store_true", help="one JSON object: the record, its outcome and the prompt")
    p.add_argument("--render", action="store_true",
                   help="a run that stored no prompts (older hsd): render the prompt again from the run's config.yaml "
                        "and show it only if it hashes to the record's prompt_hash")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {
    "validate": ("run one validation (generate or score) and write metrics", _validate,
                 "hsd.commands.validate:main"),
    "model": ("model utilities (the tiny test model, gpt-oss's tokenizer)", _model, "hsd.commands.model:main"),
    "import-legacy": ("re-parse an old pipeline run into an hsd run directory", _import_legacy,
                      "hsd.commands.import_legacy:main"),
    "data": ("link or copy the prepared dataset into the data directory", _data, "hsd.commands.data:main"),
    "ftdata": ("write the fine-tuning chat data (simple and optimized formats, stratified hold-out)", _ftdata,
               "hsd.commands.ftdata:main"),
    "train": ("LoRA fine-tuning under DeepSpeed via Accelerate (launch with torchrun for several ranks)", _train,
              "hsd.commands.train:main"),
    "merge": ("merge a LoRA adapter into its base model and save it (safetensors)", _merge,
              "hsd.commands.merge:main"),
    "collate": ("merge shards, compute metrics, references and intervals, write reports (+ comparison)",
                _collate, "hsd.commands.collate:main"),
    "report": ("regenerate the reports of runs or experiments from their records alone (no model); "
               "`hsd report index [RESULTS_DIR]`: one page listing every experiment and run", _report,
               "hsd.commands.report:main"),
    "compare": ("compare runs over the same samples: paired-bootstrap deltas, success criterion, summaries",
                _compare, "hsd.commands.compare:main"),
    "submit": ("submit jobs (Slurm, or the local executor): baseline | pipeline | sweep | resume", _submit,
               "hsd.commands.submit:main"),
    "show": ("one sample of a run: the full prompt the model saw, its raw response, the parsed label and "
             "status, the true label and target group", _show, "hsd.commands.show:main"),
    "status": ("state and progress of each job of a submitted experiment", _status, "hsd.commands.status:main"),
    "cancel": ("stop a submitted experiment's unfinished jobs (scancel, or the local jobs' processes); "
               "hsd submit resume runs them later", _cancel, "hsd.commands.cancel:main"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hsd", description="hsd: how well and how fairly an LLM detects hate speech, before and after LoRA.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, setup, _) in COMMANDS.items():
        setup(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _resolve(target: str) -> Callable[[argparse.Namespace], int | None]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    use_bytecode_cache()  # before any command imports torch (hsd.paths says why)
    args = build_parser().parse_args(argv)
    quiet_known_noise()
    # A subcommand may name its own handler (set_defaults(handler=...)); else the command's.
    handler = _resolve(getattr(args, "handler", None) or COMMANDS[args.command][2])
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # inside a submitit job SIGTERM is submitit's
        interrupt_on_sigterm()  # `kill`, `timeout`: the run records INTERRUPTED, like Ctrl-C
    try:
        code = handler(args)
    except HsdError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt as exc:
        how = str(exc) or "Ctrl-C"
        print(f"interrupted ({how}): what was recorded is kept; the same command resumes it", file=sys.stderr,
              flush=True)
        return 128 + (signal.SIGTERM if how == SIGTERM_MESSAGE else signal.SIGINT)
    return int(code or 0)


class _Ending:
    """How the ``hsd`` process ends once Python has shut it down as far as anything can notice.

    Python's own finalization of a job's interpreter (freeing every module of torch, transformers,
    scikit-learn, matplotlib; C++ static destructors) took ~1.2 s after the last atexit handler here,
    paid by every command. Registered first, :meth:`now` runs last: after the non-daemon threads
    were joined and every atexit handler (logging's flush, trackers', multiprocessing's) ran, it
    flushes stdout/stderr and ends the process with the command's exit status. ``code`` None (an
    exception other than SystemExit escaped): Python ends the process its own way.
    """

    def __init__(self) -> None:
        self.code: Optional[int] = None

    def now(self) -> None:
        if self.code is None:
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):  # closed or broken pipe: nothing more to say
                pass
        os._exit(self.code)


def _status(code: object) -> int:
    """The exit status Python gives ``SystemExit(code)``: None 0, an int itself, else (a message) 1."""
    return 0 if code is None else code if isinstance(code, int) else 1


def console() -> None:
    """The ``hsd`` executable and ``python -m hsd.cli``: :func:`main`, then a quick end of the process
    (:class:`_Ending`). Only here: a test or a caller of :func:`main` keeps its interpreter."""
    ending = _Ending()
    atexit.register(ending.now)  # before any library registers its own: they run first
    try:
        ending.code = main()
    except SystemExit as exc:  # argparse's usage errors and --help
        ending.code = _status(exc.code)
        raise
    sys.exit(ending.code)


if __name__ == "__main__":
    console()
