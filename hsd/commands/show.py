"""``hsd show RUN SAMPLE_ID [--run NAME|ROLE] [--prompt-only | --answer-only] [--json] [--render]``: one
sample, as the model saw it and as it answered.

RUN is a validation run directory, an experiment directory (or its name under ``--results-dir``,
``EXPERIMENT/RUN`` too) holding several (``--run baseline``,
``--run finetuned``: a run's directory name, or its role ``baseline`` / ``fine-tuned``), or a
comparison directory (its ``comparison.json`` names the runs). The prompt is rebuilt from the run's
``prompts/prefix-<hash>.txt`` and the record's tail (:mod:`hsd.prompt_files`) and checked against
the record's ``prompt_hash``; ``--prompt-only`` writes exactly those bytes, nothing added, so
``hsd show RUN ID --prompt-only > p.txt`` is the string the tokenizer was given. A run recorded
before prompts were stored has only the hash: ``--render`` renders the prompt again from its
``config.yaml`` and shows it only when it hashes to the record's ``prompt_hash``.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Any

from hsd.errors import HsdError

RULE = "=" * 24


class ShowError(HsdError):
    """A run or sample ``hsd show`` cannot find, or a prompt the run did not store."""


def main(args: Any) -> int:
    from hsd.reporting.rundata import load_run

    if args.json and args.prompt_only:
        raise ShowError("--json already holds the prompt (key \"prompt\"): give --json or --prompt-only, not both")
    run = load_run(pick_run(locate(args.run, args.results_dir), args.run_name))
    record = find_record(run, args.sample_id)
    prompt = None if args.answer_only else rendered_again(run, record) if args.render else stored_prompt(run, record)
    if args.json:
        fields = {"run": str(run.path), **record.to_json(), "outcome": outcome(record)}
        fields = fields if args.answer_only else {**fields, "prompt": prompt}
        print(json.dumps(fields, ensure_ascii=False, indent=1))
    elif args.prompt_only:
        sys.stdout.flush()
        sys.stdout.buffer.write(prompt.encode("utf-8"))  # byte for byte: no newline added, no locale
        sys.stdout.buffer.flush()
    else:
        print(render(run, record, prompt), flush=True)
    return 0


def locate(given: str, results_dir: str) -> Path:
    """A directory, or an experiment name (``EXPERIMENT`` or ``EXPERIMENT/RUN``) under ``results_dir``."""
    path = Path(given)
    if path.exists():
        return path
    if not path.is_absolute() and (Path(results_dir) / path).exists():
        return Path(results_dir) / path
    where = "" if path.is_absolute() else f" (nor under {results_dir}/)"
    raise ShowError(f"{given} does not exist{where}: pass a validation run directory (the path `hsd validate` "
                    "printed last), an experiment directory or name, or a comparison directory")


def pick_run(path: Path, name: str | None) -> Path:
    """The one validation run ``path`` means (``name``: a directory name or a role)."""
    from hsd.reporting.rundata import find_runs

    candidates = comparison_runs(path) or find_runs(path)
    runs = candidates if name is None else [p for p in candidates if name in (p.name, role(p))]
    if not runs:
        raise ShowError(f"--run {name}: no such run in {path}; its runs: {names(candidates)} "
                        "(give a directory name, or a role: baseline, fine-tuned)")
    if len(runs) > 1:
        raise ShowError(f"{path} holds {len(runs)} validation runs ({names(runs)}): "
                        f"pick one with --run NAME, e.g. --run {runs[0].name}")
    return runs[0]


def role(run_dir: Path) -> str:
    """As :attr:`hsd.reporting.rundata.RunData.role`, from config.yaml alone (no records read)."""
    from hsd.reporting.rundata import read_config

    cfg = read_config(run_dir)
    return "unknown" if cfg is None else "fine-tuned" if cfg.model.adapter else "baseline"


def names(runs: list[Path]) -> str:
    return ", ".join(p.name for p in runs)


def comparison_runs(path: Path) -> list[Path]:
    """The runs a comparison directory compared (its comparison.json), else []. A listed run that
    is not where it was is looked for beside the comparison (the experiment was moved)."""
    file = path / "comparison.json"
    if not file.is_file():
        return []
    try:
        listed = [Path(r["info"]["path"]) for r in json.loads(file.read_text(encoding="utf-8"))["runs"]]
    except (ValueError, KeyError, TypeError):
        raise ShowError(f"{file} is not a comparison hsd wrote: pass the run directories instead") from None
    return [p if p.is_dir() or not (path.parent / p.name).is_dir() else path.parent / p.name for p in listed]


def find_record(run: Any, sample_id: str) -> Any:
    by_id = {r.sample_id: r for r in run.records}
    if sample_id in by_id:
        return by_id[sample_id]
    ids = sorted(by_id)
    close = difflib.get_close_matches(sample_id, ids, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"ids there include {', '.join(ids[:5])}"
    raise ShowError(f"sample id {sample_id!r} is not in {run.source} ({len(ids)} records): {hint} "
                    f"(the sample_id column of strategy_unified_results_<ts>.csv lists them all)")


def stored_prompt(run: Any, record: Any) -> str:
    from hsd.prompt_files import PromptNotStored, full_prompt

    try:
        return full_prompt(run.path, record.prompt_prefix_hash, record.prompt_tail, record.prompt_hash)
    except PromptNotStored:
        if run.cfg is None:
            raise ShowError(f"{run.path} was not written by `hsd validate` (an imported old-pipeline run?) and "
                            f"holds no prompts; `hsd show {run.path} {record.sample_id} --answer-only` shows the "
                            "answer") from None
        raise ShowError(f"{run.path} was recorded by an older hsd, which stored only each prompt's hash "
                        f"(prompt_hash {record.prompt_hash}): prompts were not stored. `--render` renders this "
                        "sample's prompt again from the run's config.yaml (tokenizer, template, data) and shows it "
                        "if it hashes to prompt_hash; `--answer-only` shows the answer; to store every prompt, "
                        f"validate again with this hsd: hsd validate --config {run.path}/config.yaml "
                        "--run-dir NEW_DIR") from None


def rendered_again(run: Any, record: Any) -> str:
    """The prompt rendered now from the run's config.yaml, accepted only when it is the one the run fed
    its model (same SHA-256 as the record's ``prompt_hash``): for runs that stored no prompts."""
    from hsd.data import select_samples
    from hsd.inference.modes import get_mode
    from hsd.models.loader import load_tokenizer
    from hsd.prompts import Prompter, prompt_hash

    if run.cfg is None:
        raise ShowError(f"--render: {run.path} has no config.yaml to render its prompts from")
    samples = {s.id: s for s in select_samples(run.cfg.data)}  # the few-shot selection excludes all of them
    if record.sample_id not in samples:
        raise ShowError(f"--render: sample {record.sample_id} is no longer in the data {run.cfg.data.dir} selects; "
                        "the dataset changed since the run: its prompt cannot be rendered again")
    prompter = Prompter.from_config(run.cfg, load_tokenizer(run.cfg.model), set(samples))
    text = get_mode(run.cfg).render(prompter, samples[record.sample_id])
    if prompt_hash(text) != record.prompt_hash:
        raise ShowError(f"--render: the prompt rendered now hashes to {prompt_hash(text)}, not the record's "
                        f"prompt_hash {record.prompt_hash}: the template, few-shot data, tokenizer or hsd's rendering "
                        "changed since the run, so this is not what the model saw. Validate again with this hsd "
                        "to store the prompts")
    return text


def outcome(record: Any) -> str:
    if record.predicted_label not in ("hate", "normal"):
        return "unknown (no readable answer; left out of the headline metrics, an error in the strict ones)"
    if record.predicted_label == record.true_label:
        return "correct"
    return "false positive" if record.predicted_label == "hate" else "false negative"


def render(run: Any, record: Any, prompt: str | None) -> str:
    """The human-readable page: header, prompt (unless --answer-only), response, answer."""
    head = [f"run          {run.path}  ({run.role}, strategy {record.strategy})",
            f"sample       {record.sample_id}  (source {record.source}, persona tag {record.persona_tag})"]
    if prompt is not None and record.prompt_tail is not None:
        head.append(f"stored as    prompts/prefix-{record.prompt_prefix_hash}.txt (shared by the run's samples, "
                    f"{len(prompt) - len(record.prompt_tail)} characters) + the record's prompt_tail "
                    f"({len(record.prompt_tail)} characters)")
    parts = ["\n".join(head)]
    if prompt is not None:
        tokens = f", {record.prompt_tokens} tokens" if record.prompt_tokens is not None else ""
        parts.append(f"{RULE} prompt: what the model saw ({len(prompt)} characters{tokens}) {RULE}\n{prompt}")
    response = record.raw_response or (f"(score mode: nothing generated; P(hate) = {record.p_hate})"
                                       if record.p_hate is not None else "(empty)")
    parts.append(f"{RULE} response: what it answered (raw, special tokens kept) {RULE}\n{response}")
    rows = [("predicted label", record.predicted_label), ("parse status", record.parse_status),
            ("rationale", record.rationale), ("true label", record.true_label),
            ("target group", record.target_group), ("outcome", outcome(record)), ("p_hate", record.p_hate),
            ("stop reason", record.stop_reason), ("new tokens", record.new_tokens)]
    parts.append(f"{RULE} answer {RULE}\n" + "\n".join(f"{k:<16} {v}" for k, v in rows if v is not None))
    return "\n".join(parts)
