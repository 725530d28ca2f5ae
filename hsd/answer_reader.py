"""Read a label and rationale out of an answer's text, tolerantly, without ever raising.

:mod:`hsd.parsing` decides *where* the final answer is; this module reads *what* it says. The
old parser fell back to ``ast.literal_eval`` on model text, which raised ``TypeError`` on a
doubled-brace answer (``{{"classification": …}}`` evaluates to a set holding a dict) and can
recurse without bound. Here an answer is read in two bounded steps:

1. JSON: the first object, or the one after doubled braces, read with ``json``'s decoder on at
   most :data:`MAX_ANSWER` characters and only when nesting is shallow (deep nesting is what
   makes a recursive decoder blow up). An object with no label is read again from the value that
   holds the answer (the fine-tuned model nests it under ``final``, ``message`` or another key, often
   as a string), as is a label whose value is itself an answer; failing that, the object's one value
   that is a bare label. A whole answer that is a JSON string (``"{\\"classification\\": …}"``) is read
   from that string.
2. Key/value text: ``classification: hate`` / ``"classification": \\"hate\\"`` / single quotes,
   found with linear regular expressions; the rationale is the text after the ``rationale:`` beside
   the label (the first after it, else before it) up to its closing quote. This also reads an
   answer held in a string value with its quotes unescaped (``{"message": "{"classification": …}"}``),
   which no JSON decoder can.

A reading is ``repaired`` when the answer's structure had to be fixed (doubled braces, nested
under ``final``): :mod:`hsd.parsing` then calls a direct answer ``ok_unframed``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional

MAX_ANSWER = 20_000  # characters of an answer that are read; real answers are a few hundred
MAX_BRACKETS = 256  # more [ or { than this: skip the JSON decoder (its recursion is the risk)
MAX_NESTED_FINAL = 3  # {"final": "{\"final\": …}"} levels followed
MAX_VALUES = 16  # values of one object searched for a nested answer

LABEL_KEYS = ("classification", "label", "prediction", "class")
RATIONALE_KEYS = ("rationale", "reason", "explanation")
_SPECIAL = re.compile(r"<\|[a-z_]{1,20}\|>")
_FENCE = re.compile(r"```(?:json|[a-zA-Z]{0,20}(?=\s))?\s*")  # "```jsonLABEL: …": the tag is json
_Q = r"[\"'\\]{0,4}"  # quotes around a key or value, escaped when nested in a string
# "json" left glued to the answer by a stripped <|constrain|>json: "jsonLABEL: hate", "json{…}"
_LEADING_TAG = re.compile(r"\A[^\w{]{0,8}(?:json|JSON)(?![a-z])")
_MD = r"[*_]{0,3}"  # Markdown emphasis around a key or value: **Label:** hate, LABEL: **hate**
_LABEL_TEXT = re.compile(
    rf"{_Q}\b(?:classification|label|prediction)\b{_MD}{_Q}\s*[:=]{_MD}\s*[\"'\\*\[(]{{0,4}}([A-Za-z-]{{1,40}})", re.I)
_RATIONALE_KEY = re.compile(rf"{_Q}\b(?:rationale|reason|explanation)\b{_MD}{_Q}\s*[:=]{_MD}\s*", re.I)
_RATIONALE_END = re.compile(r"\\?[\"']\s*[,}]")
_NESTED_FINAL = re.compile(rf"{_Q}\bfinal\b{_Q}\s*:", re.I)
_DOUBLED = re.compile(r"[^{]{0,40}\{\s*\{")
_LABEL_WORD = re.compile(r"\A\s*(?:hate|normal)[\s.]*\Z", re.I)
_BARE_LABEL = re.compile(r"\A[\s\"'`]*([A-Za-z]{1,40})[\s\"'`.]*\Z")


@dataclass(frozen=True)
class Reading:
    label: Optional[str]  # as written (not yet lower-cased or checked); None: no label found
    rationale: Optional[str]
    repaired: bool = False


def strip_special(text: str) -> str:
    """The text without harmony special tokens (``<|constrain|>`` and the like)."""
    return _SPECIAL.sub("", text)


def read_answer(answer: str, depth: int = 0) -> Reading:
    """Label and rationale from one answer's text; never raises, reads at most MAX_ANSWER characters."""
    body = _unfence(_LEADING_TAG.sub("", strip_special(answer[: MAX_ANSWER * 2]).strip()[:MAX_ANSWER], count=1))
    obj, doubled = _json_object(body)
    if obj is not None:
        reading = _from_object(obj, depth)
        if reading is not None:
            return Reading(reading.label, reading.rationale, reading.repaired or doubled)
    elif body.startswith('"') and depth < MAX_NESTED_FINAL:
        inner = _json_string(body)  # the whole answer is one JSON string: "{\"classification\": …}"
        reading = read_answer(inner, depth + 1) if inner is not None else None
        if reading is not None and reading.label is not None:
            return Reading(reading.label, reading.rationale, True)
    return _key_value(body, doubled)


def _from_object(obj: dict[str, Any], depth: int) -> Optional[Reading]:
    """The reading of a decoded object: its label, or the answer held in one of its values.

    A value holds an answer when the model nested its whole answer there (under ``final``,
    ``message``, ``response`` or any other key, as an object or as a string, escaped or not) or
    when the label's own value is such an answer (``{"classification": "{\"classification\": …}"}``).
    None: no label anywhere (the caller falls back to the key/value scan).
    """
    label = _value(obj, LABEL_KEYS)
    if label is not None and not _holds_answer(label):
        return Reading(_text(label), _text(_value(obj, RATIONALE_KEYS)), False)
    if depth >= MAX_NESTED_FINAL:
        return None
    final = _value(obj, ("final",))
    candidates = ([label] if label is not None else []) + ([final] if final is not None else []) + [
        v for v in list(obj.values())[:MAX_VALUES] if v is not label and v is not final and _holds_answer(v)]
    for value in candidates:
        inner = read_answer(value if isinstance(value, str) else _dumps(value), depth + 1)
        if inner.label is not None:
            return Reading(inner.label, inner.rationale, True)
    # {"message": "hate"}, {"answer": "normal", "why": …}: the one value that is a bare label
    bare = [v for v in list(obj.values())[:MAX_VALUES] if isinstance(v, str) and _LABEL_WORD.match(v)]
    if len(bare) == 1:
        return Reading(bare[0], _text(_value(obj, RATIONALE_KEYS)), True)
    return None


def _holds_answer(value: Any) -> bool:
    """Whether a JSON value may hold a whole answer rather than be a label or a rationale."""
    if isinstance(value, (dict, list)):
        return True
    return isinstance(value, str) and ("{" in value or _LABEL_TEXT.search(value[:MAX_ANSWER]) is not None)


def _json_string(body: str) -> Optional[str]:
    """The text of a JSON string literal that opens the body, or None."""
    try:
        value, _ = json.JSONDecoder().raw_decode(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def _key_value(body: str, doubled: bool) -> Reading:
    match = _LABEL_TEXT.search(body)
    if match is None:
        bare = _BARE_LABEL.match(body)
        return Reading(bare.group(1) if bare else None, None, False)
    nested = _NESTED_FINAL.search(body, 0, match.start()) is not None
    doubled = doubled or _DOUBLED.match(body) is not None
    return Reading(match.group(1), _rationale(body, match.end()), doubled or nested)


def _rationale(body: str, after: int) -> Optional[str]:
    """The rationale beside the label: the first one after it (an answer nested in another key's
    string keeps its own rationale after its label), else the first one before it."""
    key = _RATIONALE_KEY.search(body, after) or _RATIONALE_KEY.search(body)
    if key is None:
        return None
    rest = body[key.end(): key.end() + 4000].lstrip("\"'\\")
    end = _RATIONALE_END.search(rest)
    # its closing quote found, the value is what lies before it (quotes inside it are kept);
    # else it ran to the end of the answer, and closing quotes and braces are trimmed
    text = rest[: end.start()].strip() if end else rest.rstrip("\"'}\\ \t\r\n")
    return text or None


def _unfence(body: str) -> str:
    """The answer without its Markdown code fences (```json … ```, doubled or with junk between):
    each becomes a line break, so the reader sees the object or the key/value text inside."""
    if "```" not in body:
        return body
    return _FENCE.sub("\n", body).strip()


def _json_object(body: str) -> tuple[Optional[dict[str, Any]], bool]:
    """The first JSON object (or the one inside doubled braces), and whether braces were doubled."""
    start = body.find("{")
    if start < 0 or body.count("{") + body.count("[") > MAX_BRACKETS:
        return None, False
    decoder = json.JSONDecoder()
    for extra in range(3):  # {, {{, {{{
        if body[start + extra: start + extra + 1] != "{":
            break
        try:
            obj, _ = decoder.raw_decode(body, start + extra)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            return obj, extra > 0
    return None, False


def _value(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    for key in keys:
        if lowered.get(key) is not None:
            return lowered[key]
    return None


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value if isinstance(value, str) else _dumps(value)


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)[:MAX_ANSWER]
