"""``hsd <command>``: the project's only argument parser.

Each command is declared here (its arguments) and implemented elsewhere, named lazily as
``"module:function"`` so ``hsd --help`` imports no torch. A handler receives the parsed
``argparse.Namespace`` and returns an exit code (or None for 0). User-fixable problems raise
:class:`hsd.errors.HsdError`; they are printed as one ``error:`` line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

from hsd.errors import HsdError


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


def _import_legacy(p: argparse.ArgumentParser) -> None:
    p.add_argument("old_run_dir", help="an old pipeline run directory (intermediate_results_*.jsonl)")
    p.add_argument("--out", required=True, help="new hsd run directory (must not exist)")
    p.add_argument("--keep-predictions", action="store_true",
                   help="keep the old CSV predictions instead of re-parsing raw responses")


def _data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default=None, help="prepared data to link (default: ../shared/data)")
    p.add_argument("--dest", default=None, help="data directory (default: $HSD_DATA_DIR or data/)")
    p.add_argument("--copy", action="store_true", help="copy instead of symlink")


# name -> (help, argument setup, "module:function")
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {
    "validate": ("run one validation (generate or score) and write metrics", _validate,
                 "hsd.validate:main"),
    "model": ("model utilities (build the tiny test model)", _model, "hsd.models.tiny:main"),
    "import-legacy": ("re-parse an old pipeline run into an hsd run directory", _import_legacy,
                      "hsd.legacy:main"),
    "data": ("link or copy the prepared dataset into the data directory", _data, "hsd.data.setup:main"),
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
    args = build_parser().parse_args(argv)
    handler = _resolve(COMMANDS[args.command][2])
    try:
        code = handler(args)
    except HsdError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
