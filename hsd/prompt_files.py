"""The rendered prompts a validation fed its model, stored compactly in the run directory.

A prompt is the shared part (system prompt, few-shot turns, the chat template up to the
sample's text) followed by the sample's own part (its text, the rest of the user turn, the
generation prompt; in score mode also the opened answer). The shared part is thousands of
characters and identical for every sample, so it is stored once per run, as
``prompts/prefix-<hash>.txt`` (hash: :func:`prompt_hash` of its text; a run holds several when
the part before the text differs between samples), and each record stores only
``prompt_prefix_hash`` and ``prompt_tail``. ``prefix + tail`` is byte for byte the string given
to the tokenizer, and its hash is the record's ``prompt_hash``, which :func:`full_prompt` checks.

Where the shared part ends is found by rendering the same sample once more with
:data:`SENTINEL` as its text: everything before the sentinel is the prefix. Nothing about the
template is assumed; when the real prompt does not start with that prefix (a template that puts
per-sample values before the text differently), the prefix is empty and the tail is the whole
prompt: still exact, only less compact.

The prefix files are written before any record names them, each atomically (temp file +
rename), so ranks writing the same prefix at once, or a resumed attempt, leave one whole file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from hsd.runs import RunError, atomic_write_text

PROMPT_DIR = "prompts"
# Private-use characters: no dataset text holds them, and chat templates copy them unchanged.
SENTINEL = "\ue000hsd-sample-text\ue001"


def prompt_hash(text: str) -> str:
    """First 16 hex characters of the SHA-256 of a rendered prompt (the records' ``prompt_hash``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class SplitPrompt:
    """One rendered prompt as the shared prefix and the sample's tail."""

    prefix: str
    tail: str

    @property
    def text(self) -> str:
        return self.prefix + self.tail

    @property
    def prefix_hash(self) -> str:
        return prompt_hash(self.prefix)


def split_prompt(prompt: str, probe: str) -> SplitPrompt:
    """``prompt`` split where ``probe`` (the same sample rendered with :data:`SENTINEL` as its
    text) has the sentinel; the whole prompt as the tail when they disagree before it."""
    cut = probe.find(SENTINEL)
    prefix = probe[:cut] if cut >= 0 else ""
    if not prompt.startswith(prefix):
        prefix = ""
    return SplitPrompt(prefix, prompt[len(prefix):])


def prefix_path(run_dir: Path, prefix_hash: str) -> Path:
    return run_dir / PROMPT_DIR / f"prefix-{prefix_hash}.txt"


def write_prefixes(run_dir: Path, prompts: Iterable[SplitPrompt]) -> list[Path]:
    """Each distinct prefix not yet in the run, written once; returns the files written now."""
    written = []
    for prefix in {p.prefix for p in prompts}:
        path = prefix_path(run_dir, prompt_hash(prefix))
        if not path.is_file():  # a resumed attempt, or another rank, wrote the same text already
            atomic_write_text(path, prefix)
            written.append(path)
    return written


class PromptNotStored(RunError):
    """The record holds only the prompt's hash: it was written before hsd stored prompts."""


def full_prompt(run_dir: Path, prompt_prefix_hash: Optional[str], prompt_tail: Optional[str],
                expected_hash: str) -> str:
    """The exact prompt a record was evaluated with: its prefix file + its tail, hash-checked."""
    if prompt_tail is None or prompt_prefix_hash is None:
        raise PromptNotStored(f"{run_dir}: its records hold only the prompt hash ({expected_hash})")
    path = prefix_path(run_dir, prompt_prefix_hash)
    try:
        prefix = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise RunError(f"{path} is missing: the record's prompt prefix {prompt_prefix_hash} was deleted or "
                       f"never copied with the run; copy the run's whole {PROMPT_DIR}/ folder") from None
    except UnicodeDecodeError as exc:
        raise RunError(f"{path} is not UTF-8 (byte offset {exc.start}): the file was changed after the run "
                       f"wrote it; restore it from a copy of the run") from None
    text = prefix + prompt_tail
    if prompt_hash(text) != expected_hash:
        raise RunError(f"{path} + the record's prompt_tail hash to {prompt_hash(text)}, not the record's "
                       f"prompt_hash {expected_hash}: the file or the record was changed after the run; "
                       "restore them from a copy of the run")
    return text
