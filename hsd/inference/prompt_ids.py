"""Token ids of the rendered prompts, the part every sample shares tokenized once.

Why: validation needs each prompt's ids (their lengths order the batches, the refill decoder runs
on them), and the rich prompt is ~1,780 tokens of which ~1,724 are the same for every sample; the
1,009 full prompts of the test split took ~3 s of one CPU thread to tokenize, per pass.

Why splitting is exact: a fast (Rust) Hugging Face tokenizer first cuts its input at the added
tokens it finds (leftmost-longest; gpt-oss's harmony markers ``<|start|>``, ``<|message|>``,
``<|end|>`` ... are added special tokens), and only then normalizes, pre-tokenizes and encodes each
piece between them, every piece on its own. Cut a prompt right after an added token ``m`` that
the tokenizer matched there (the *head*, ending with ``m``; the *rest*: what follows) and, when no
added token's text spans the cut,

    ids(head + rest) == ids(head) + ids(m + rest)[1:]

``m`` is kept in front of the rest so that the rest's first piece follows an added token as it
does in the whole prompt: a pre-tokenizer that treats the first piece of an input differently
(Metaspace's ``prepend_scheme: first``, a prefix space) then sees the same thing either way. The
cut and the head's ids come from tokenizing each distinct prefix once, with offsets: the prefix's
last added token ends at the cut, so ``ids(head)`` is the prefix's ids up to and including it.

Where that is not known to hold, the prompt is tokenized whole, as before:

* the tokenizer is not a fast one, has no added tokens, splits special tokens as text, or has an
  added token that strips neighbouring whitespace, matches single words only, or is matched after
  normalization (``lstrip``/``rstrip``/``single_word``/``normalized``): every prompt;
* a prefix that is empty, holds no added token, or is used by one prompt only (nothing to share);
* a prompt where an added token could match across the cut (it starts in the head's end and its
  remainder starts the rest).

Then a self-check: the first and the longest prompt of each prefix are tokenized whole too; on
any difference one warning is logged and every prompt is tokenized whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hsd.prompt_files import SplitPrompt

log = logging.getLogger("hsd.inference.prompt_ids")


def plain_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Each text tokenized whole, without special tokens: what the split path must equal."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def split_unsupported(tokenizer: Any) -> Optional[str]:
    """Why this tokenizer's ids cannot be split at added tokens (None: they can)."""
    if not getattr(tokenizer, "is_fast", False) or getattr(tokenizer, "backend_tokenizer", None) is None:
        return "not a fast tokenizer: its added-token handling is Python's, not the one reasoned about here"
    if getattr(tokenizer, "split_special_tokens", False):
        return "split_special_tokens is on: special tokens are read as plain text"
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    if not added:
        return "no added tokens to cut at"
    for token in added.values():
        for flag in ("lstrip", "rstrip", "single_word", "normalized"):
            if getattr(token, flag, True):  # unknown: assume the worst
                return f"added token {getattr(token, 'content', token)!r} has {flag}=True"
    return None


@dataclass(frozen=True)
class _Head:
    """A prefix cut after its last added token: the part whose ids are shared."""

    cut: int  # prefix[:cut] is the head; it ends with `marker`
    ids: tuple[int, ...]
    marker: str
    marker_id: int
    spans: tuple[str, ...]  # ends of added tokens that start inside the head's end: a rest starting so crosses the cut


def _head(tokenizer: Any, prefix: str, added: dict[int, str]) -> Optional[_Head]:
    if not prefix:
        return None
    enc = tokenizer(prefix, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    for k in range(len(ids) - 1, -1, -1):
        marker = added.get(ids[k])
        if marker is None:
            continue
        start, end = offsets[k]
        if prefix[start:end] != marker:  # offsets that do not say what was matched: do not guess
            return None
        head = prefix[:end]
        spans = tuple(c[n:] for c in set(added.values()) for n in range(1, len(c)) if head.endswith(c[:n]))
        return _Head(end, tuple(ids[: k + 1]), marker, ids[k], spans)
    return None


def token_ids(tokenizer: Any, prompts: Sequence[SplitPrompt]) -> list[list[int]]:
    """``tokenizer(p.text, add_special_tokens=False)["input_ids"]`` for each prompt, the shared
    head of each distinct prefix tokenized once (see the module docstring)."""
    why = split_unsupported(tokenizer)
    if why is not None:
        log.info("prompt ids: every prompt tokenized whole (%s)", why)
        return plain_ids(tokenizer, [p.text for p in prompts])
    try:
        return _split_ids(tokenizer, prompts)
    except Exception as exc:  # noqa: BLE001 - a speed-up must never be what fails a run
        log.warning("prompt ids: splitting at the shared prefix failed (%s: %s); tokenizing every prompt whole",
                    type(exc).__name__, exc)
        return plain_ids(tokenizer, [p.text for p in prompts])


def _split_ids(tokenizer: Any, prompts: Sequence[SplitPrompt]) -> list[list[int]]:
    added = {int(i): t.content for i, t in tokenizer.added_tokens_decoder.items()}
    users: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        users.setdefault(p.prefix, []).append(i)
    heads = {prefix: _head(tokenizer, prefix, added) for prefix, idx in users.items() if len(idx) > 1}
    out: list[Optional[list[int]]] = [None] * len(prompts)
    split, rests = [], []
    for i, p in enumerate(prompts):
        head = heads.get(p.prefix)
        if head is None:
            continue
        rest = p.prefix[head.cut:] + p.tail
        if not any(rest.startswith(s) for s in head.spans):
            split.append(i)
            rests.append(head.marker + rest)
    for i, ids in zip(split, plain_ids(tokenizer, rests)):
        head = heads[prompts[i].prefix]
        if ids and ids[0] == head.marker_id:  # else the marker did not match at the cut: tokenize it whole
            out[i] = list(head.ids) + ids[1:]
    whole = [i for i, ids in enumerate(out) if ids is None]
    for i, ids in zip(whole, plain_ids(tokenizer, [prompts[i].text for i in whole])):
        out[i] = ids
    if not _self_check(tokenizer, prompts, out, whole):
        return plain_ids(tokenizer, [p.text for p in prompts])
    log.info("prompt ids: %d of %d prompts tokenized as a shared head (%d distinct) + their own part",
             len(prompts) - len(whole), len(prompts), sum(h is not None for h in heads.values()))
    return out  # type: ignore[return-value]  # every slot is filled above


def _self_check(tokenizer: Any, prompts: Sequence[SplitPrompt], out: list, whole: list[int]) -> bool:
    """The first and the longest split prompt of each prefix, tokenized whole, equal their split ids."""
    skip, picks = set(whole), {}
    for i, p in enumerate(prompts):
        if i in skip:
            continue
        first, longest = picks.setdefault(p.prefix, (i, i))
        if len(p.tail) > len(prompts[longest].tail):
            picks[p.prefix] = (first, i)
    check = sorted({i for pair in picks.values() for i in pair})
    for i, ids in zip(check, plain_ids(tokenizer, [prompts[i].text for i in check])):
        if ids != out[i]:
            at = next((n for n, (a, b) in enumerate(zip(ids, out[i])) if a != b), min(len(ids), len(out[i])))
            log.warning("prompt ids: the split ids of prompt %d differ from tokenizing it whole (first at token %d "
                        "of %d); tokenizing every prompt whole", i, at, len(ids))
            return False
    return True
