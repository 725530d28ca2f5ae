"""Model response -> (label, rationale, parse status), reading only the model's final answer.

gpt-oss answers in the harmony format: reasoning in the ``analysis`` channel, then the answer
in the ``final`` channel::

    <|channel|>analysis<|message|>…reasoning…<|end|><|start|>assistant<|channel|>final<|message|>ANSWER<|return|>

The old pipeline searched the whole response for label words, so reasoning such as "is this
hate? … no" became a prediction, and answers it could not find became ``normal``. Here the
label comes from the final answer and nowhere else: a response without a readable final
answer is ``unknown``, and its status says why. The reasoning is never consulted.

Final answers are found in these forms (the last one wins when there are several):

* special tokens kept: ``<|channel|>final<|message|>ANSWER`` (also ``<|constrain|>json``
  variants and ``<|channel|>commentary to=final …<|message|>``), ending at ``<|return|>``,
  ``<|end|>``, ``<|call|>``, ``<|endoftext|>``, ``<|start|>`` or the end of the text;
* special tokens stripped: ``…assistantfinal{…}``, ``…assistantcommentary to=final json{…}``;
* seen after the old LoRA run: a leading ``final{…}`` or ``"final{…}``;
* a response that *is* the answer (no reasoning): ``{"classification": …}`` with or without a
  code fence, ``{"final": "classification: normal"}``, ``classification: hate``, ``hate``.

An answer is read as JSON (extra keys and trailing text allowed), then as a Python literal
(single quotes), then as ``classification: <label>`` text. Labels are case-insensitive.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional


class ParseStatus(str, Enum):
    """Why a response got its label. Statuses starting with ``ok`` mean a label was read.

    ============================  ================================================================
    status                        meaning
    ============================  ================================================================
    ok_final_channel              harmony final channel, special tokens kept
    ok_stripped_final             final answer found by the markers left when special tokens were
                                  stripped (``assistantfinal``, ``assistantcommentary to=final``,
                                  a leading ``final{``)
    ok_json                       the whole response is a JSON answer (no reasoning)
    ok_plain_text                 the whole response is ``classification: <label>`` or the label
    ok_legacy_prediction          ``hsd import-legacy --keep-predictions``: the old pipeline's label
    empty                         empty or whitespace-only response
    no_final_answer_truncated     reasoning without an end marker and no final answer: cut off by
                                  the token limit. Stripped text carries no end markers, and a
                                  harmony model stops only after its final message, so stripped
                                  text without a final answer counts as cut off
    no_final_answer               every message ended, yet none is a final answer
    invalid_label                 a final answer whose label is not hate/normal
    unparsable_final              a final answer with no readable label in it
    legacy_unknown                ``--keep-predictions``: the old label was not hate/normal
    ============================  ================================================================
    """

    OK_FINAL_CHANNEL = "ok_final_channel"
    OK_STRIPPED_FINAL = "ok_stripped_final"
    OK_JSON = "ok_json"
    OK_PLAIN_TEXT = "ok_plain_text"
    OK_LEGACY_PREDICTION = "ok_legacy_prediction"
    EMPTY = "empty"
    NO_FINAL_ANSWER_TRUNCATED = "no_final_answer_truncated"
    NO_FINAL_ANSWER = "no_final_answer"
    INVALID_LABEL = "invalid_label"
    UNPARSABLE_FINAL = "unparsable_final"
    LEGACY_UNKNOWN = "legacy_unknown"

    @property
    def ok(self) -> bool:
        return self.value.startswith("ok")


@dataclass(frozen=True)
class ParseResult:
    label: str  # hate | normal | unknown
    rationale: Optional[str]
    status: str  # a ParseStatus value


VALID_LABELS = ("hate", "normal")
UNKNOWN = "unknown"

# Harmony special tokens that end a message or the generation.
_END = r"<\|return\|>|<\|end\|>|<\|call\|>|<\|endoftext\|>|<\|start\|>"
_SPECIAL = re.compile(r"<\|[a-z_]+\|>")
# Where a final answer starts; each pattern's match end is the first character of the answer.
_FINAL_MARKERS: tuple[tuple[re.Pattern[str], ParseStatus], ...] = (
    (re.compile(r"<\|channel\|>\s*(?:final|commentary\s+to=final)\b[^<]*"
                r"(?:<\|constrain\|>[^<]*)?<\|message\|>"), ParseStatus.OK_FINAL_CHANNEL),
    # stripped tokens leave the role and channel glued together: "assistantfinal"
    (re.compile(r"assistantfinal"), ParseStatus.OK_STRIPPED_FINAL),
    (re.compile(r"assistantcommentary\s+to=final\b"), ParseStatus.OK_STRIPPED_FINAL),
    (re.compile(r"\A[\s\"'`.…]*final(?=\s*(?:json\s*)?\{)", re.I), ParseStatus.OK_STRIPPED_FINAL),
)
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)(?:```|\Z)", re.S)
_LABEL_KEYS = ("classification", "label", "prediction", "class")
_RATIONALE_KEYS = ("rationale", "reason", "explanation")
_LABEL_TEXT = re.compile(
    r"[\"']?\b(?:classification|label|prediction)\b[\"']?\s*[:=]\s*[\"']?([A-Za-z_-]+)", re.I)
_RATIONALE_TEXT = re.compile(r"[\"']?\brationale\b[\"']?\s*[:=]\s*[\"']?(.+?)[\"'}]*\s*\Z", re.I | re.S)
_BARE_LABEL = re.compile(r"\A[\s\"'`]*([A-Za-z]+)[\s\"'`.]*\Z")
# A response that is itself an answer (no reasoning) begins like one.
_DIRECT_START = re.compile(r"\A\s*(?:[{`]|[\"']?\b(?:classification|label|prediction)\b[\"']?\s*[:=])", re.I)


def parse_response(text: Optional[str]) -> ParseResult:
    """Read the label from a response's final answer; ``unknown`` with a status when there is none."""
    if text is None or not text.strip():
        return ParseResult(UNKNOWN, None, ParseStatus.EMPTY.value)
    found = _last_final(text)
    if found is not None:
        answer, status = found
        return _read_answer(answer, status)
    if _DIRECT_START.match(text) or _BARE_LABEL.match(text):
        return _read_answer(text, None)
    return ParseResult(UNKNOWN, None, _no_final_status(text).value)


def _last_final(text: str) -> Optional[tuple[str, ParseStatus]]:
    """The text of the last final answer and how it was marked, or None."""
    best: Optional[tuple[int, ParseStatus]] = None
    for pattern, status in _FINAL_MARKERS:
        for match in pattern.finditer(text):
            if best is None or match.end() > best[0]:
                best = (match.end(), status)
    if best is None:
        return None
    start, status = best
    end = re.search(_END, text[start:])
    return text[start: start + end.start()] if end else text[start:], status


def _no_final_status(text: str) -> ParseStatus:
    """Cut off (last message never ended) or finished without a final answer."""
    last_message = text.rfind("<|message|>")
    if last_message < 0:
        return ParseStatus.NO_FINAL_ANSWER_TRUNCATED  # stripped text: see the status table
    ended = re.search(_END, text[last_message:])
    return ParseStatus.NO_FINAL_ANSWER if ended else ParseStatus.NO_FINAL_ANSWER_TRUNCATED


def _read_answer(answer: str, where: Optional[ParseStatus]) -> ParseResult:
    """Label and rationale from the answer text; ``where`` is None for a direct answer."""
    body = _SPECIAL.sub("", answer).strip()
    fence = _FENCE.search(body)
    if fence and body.startswith("```"):
        body = fence.group(1).strip()
    obj = _load_object(body)
    if obj is not None:
        if "final" in obj and isinstance(obj["final"], str) and not _value(obj, _LABEL_KEYS):
            return _read_answer(obj["final"], where or ParseStatus.OK_JSON)  # {"final": "classification: normal"}
        label = _value(obj, _LABEL_KEYS)
        rationale = _value(obj, _RATIONALE_KEYS)
        status = where or ParseStatus.OK_JSON
        if label is not None:
            return _labelled(str(label), _text_or_none(rationale), status)
    match = _LABEL_TEXT.search(body) or _BARE_LABEL.match(body)
    if match is None:
        return ParseResult(UNKNOWN, None, ParseStatus.UNPARSABLE_FINAL.value)
    rationale_match = _RATIONALE_TEXT.search(body)
    status = where or (ParseStatus.OK_JSON if body.startswith("{") else ParseStatus.OK_PLAIN_TEXT)
    return _labelled(match.group(1), rationale_match.group(1).strip() if rationale_match else None, status)


def _labelled(raw_label: str, rationale: Optional[str], status: ParseStatus) -> ParseResult:
    label = raw_label.strip().lower()
    if label not in VALID_LABELS:
        return ParseResult(UNKNOWN, rationale, ParseStatus.INVALID_LABEL.value)
    return ParseResult(label, rationale, status.value)


def _load_object(body: str) -> Optional[dict[str, Any]]:
    """The first JSON (or single-quoted Python) object in ``body``; trailing text is ignored."""
    start = body.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError:
        obj = _literal_object(body[start:])
    return obj if isinstance(obj, dict) else None


def _literal_object(text: str) -> Any:
    """``{'classification': 'hate'}``: the shortest balanced ``{…}`` read as a Python literal."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            try:
                return ast.literal_eval(text[: i + 1])
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
    return None


def _value(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    for key in keys:
        if key in lowered and lowered[key] is not None:
            return lowered[key]
    return None


def _text_or_none(value: Any) -> Optional[str]:
    return None if value is None else str(value)
