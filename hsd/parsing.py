"""Model response -> (label, rationale, parse status), reading only the model's final answer.

gpt-oss answers in the harmony format: reasoning in the ``analysis`` channel, then the answer
in the ``final`` channel::

    <|channel|>analysis<|message|>…reasoning…<|end|><|start|>assistant<|channel|>final<|message|>ANSWER<|return|>

The old pipeline searched the whole response for label words, so reasoning such as "is this
hate? … no" became a prediction, and answers it could not find became ``normal``. Here the
label comes from the final answer and nowhere else: a response without a readable final
answer is ``unknown``, and its status says why. The reasoning is never consulted.

Final answers are found in these forms (the last marker wins when there are several):

* special tokens kept: ``<|channel|>final<|message|>ANSWER`` (also ``<|constrain|>json``
  variants and ``<|channel|>commentary to=final …<|message|>``), ending at ``<|return|>``,
  ``<|end|>``, ``<|call|>``, ``<|endoftext|>``, ``<|start|>`` or the end of the text;
* special tokens stripped: ``…assistantfinal{…}``, ``…assistantcommentary to=final json{…}``;
* a response that *is* the answer (no reasoning): ``{"classification": …}`` with or without a
  code fence, ``classification: hate`` (with a ``Rationale:`` line or not), ``hate``;
* a response that is the answer with its frame broken, as LoRA-tuned gpt-oss writes it:
  junk before it (``",final{…}``, ``#final{…}``, ``1final{…}``, ``",name{…}``, ``\\ufffdfinal{…}``),
  doubled braces ``{{…}}``, the answer nested under a ``final`` key as a string, even one that is
  not valid JSON (``{"final": "{"classification": \\"hate\\", …}"}``, ``{"final": "classification: normal"}``).
  A response counts as an answer only when it *starts* like one (at most a few non-letters and
  one short word before it, never ``analysis``): reasoning cut off mid-sentence stays ``unknown``;
* the final channel's name without its role after the reasoning, tokens stripped, with junk before
  the answer (``…So classification: hate. Output JSON.final"{…}``, ``…final]{…}``,
  ``…final\\n\\n```json{…}``, ``…finalLABEL: normal``), or the role with no channel at all before an
  object (``…JSON.assistant{…}``): the answer after it wins over any label the reasoning names. Only
  where an answer follows: "final" after a space is prose unless an object closes the response, and a
  quoted ``"final":`` key belongs to the object around it.

An answer is read by :mod:`hsd.answer_reader`: JSON first, then a tolerant key/value scan that
cannot raise and reads a bounded prefix only. :func:`parse_response` never raises, whatever it
is given.

Truncation is a fact recorded by the backend (``stop_reason`` ``"length"``: the token limit was
reached). Without one (a legacy import) a response with no answer is called *likely* truncated by
a documented heuristic; see the status table.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

from hsd.answer_reader import Reading, read_answer, strip_special

log = logging.getLogger("hsd.parsing")


class ParseStatus(str, Enum):
    """Why a response got its label. Statuses starting with ``ok`` mean a label was read.

    ================================  ============================================================
    status                            meaning
    ================================  ============================================================
    ok_final_channel                  harmony final channel, special tokens kept
    ok_stripped_final                 final answer found by the markers left when special tokens
                                      were stripped (``assistantfinal``, ``assistantcommentary
                                      to=final``)
    ok_json                           the whole response is a JSON answer object (no reasoning)
    ok_plain_text                     the whole response is ``classification: <label>`` or the label
    ok_unframed                       an answer whose frame is broken: the whole response with junk or
                                      a stray word before it (``",final{``, ``",name{``), doubled
                                      braces, the answer nested under a ``final`` (or any) key; or the
                                      channel name without its role after reasoning (``JSON.final"{``)
    ok_legacy_prediction              ``hsd import-legacy --keep-predictions``: the old pipeline's label
    empty                             empty or whitespace-only response
    no_final_answer_truncated         generation stopped at the token limit (stop reason ``length``)
                                      without a final answer
    no_final_answer_likely_truncated  no stop reason recorded (legacy import) and no answer: reasoning
                                      whose last message never ended. Heuristic: stripped text carries
                                      no end markers, and a harmony model stops only after its final
                                      message, so stripped reasoning without an answer counts here
    no_final_answer                   generation stopped by itself (a stop token), or every message
                                      ended, yet none is a final answer
    invalid_label                     a final answer whose label is not hate/normal
    unparsable_final                  a final answer (or answer-shaped response) with no readable label;
                                      with stop reason ``length`` this is ``no_final_answer_truncated``
    parser_error                      the parser itself failed (a bug to report; the run goes on);
                                      the adversarial tests assert it never happens
    legacy_unknown                    ``--keep-predictions``: the old label was not hate/normal
    legacy_unreadable_row             ``hsd import-legacy``: the old jsonl line is not JSON (cut off
                                      mid-write); its text and true label were salvaged
    ================================  ============================================================
    """

    OK_FINAL_CHANNEL = "ok_final_channel"
    OK_STRIPPED_FINAL = "ok_stripped_final"
    OK_JSON = "ok_json"
    OK_PLAIN_TEXT = "ok_plain_text"
    OK_UNFRAMED = "ok_unframed"
    OK_LEGACY_PREDICTION = "ok_legacy_prediction"
    EMPTY = "empty"
    NO_FINAL_ANSWER_TRUNCATED = "no_final_answer_truncated"
    NO_FINAL_ANSWER_LIKELY_TRUNCATED = "no_final_answer_likely_truncated"
    NO_FINAL_ANSWER = "no_final_answer"
    INVALID_LABEL = "invalid_label"
    UNPARSABLE_FINAL = "unparsable_final"
    PARSER_ERROR = "parser_error"
    LEGACY_UNKNOWN = "legacy_unknown"
    LEGACY_UNREADABLE_ROW = "legacy_unreadable_row"

    @property
    def ok(self) -> bool:
        return self.value.startswith("ok")


# One line per status for report tables; statuses set outside this module are described too.
STATUS_MEANINGS: dict[str, str] = {
    "ok_final_channel": "answer in the harmony final channel",
    "ok_stripped_final": "answer after the stripped final-channel marker (assistantfinal)",
    "ok_json": "the response is only a JSON answer (no reasoning)",
    "ok_plain_text": "the response is only 'classification: <label>' or the label",
    "ok_unframed": "an answer with a broken frame (junk before it, doubled braces, nested in a key, 'final' without its role)",
    "ok_legacy_prediction": "the old pipeline's own label (--keep-predictions)",
    "ok_score": "score mode: hate iff P(hate) >= threshold",
    "ok_reference": "reference classifier",
    "empty": "empty response",
    "no_final_answer_truncated": "stopped at the token limit without a final answer",
    "no_final_answer_likely_truncated": "no stop reason recorded; reasoning never reached an answer",
    "no_final_answer": "stopped by itself without a final answer",
    "invalid_label": "a final answer whose label is not hate/normal",
    "unparsable_final": "a final answer with no readable label",
    "parser_error": "the parser failed on this response (a bug: report it)",
    "legacy_unknown": "the old pipeline's label was not hate/normal",
    "legacy_unreadable_row": "an old jsonl line that is not JSON (text and true label salvaged)",
}


@dataclass(frozen=True)
class ParseResult:
    label: str  # hate | normal | unknown
    rationale: Optional[str]
    status: str  # a ParseStatus value


VALID_LABELS = ("hate", "normal")
# The label word with the task's own noun after it; "not hate", "non-hate", "hateful" stay invalid labels.
_LABEL_ALIASES = {"hate speech": "hate", "hate_speech": "hate", "hate-speech": "hate"}
UNKNOWN = "unknown"
STOP_REASONS = ("stop", "length")

# Harmony special tokens that end a message or the generation.
_END = re.compile(r"<\|return\|>|<\|end\|>|<\|call\|>|<\|endoftext\|>|<\|start\|>")
# Where a final answer starts; each pattern's match end is the first character of the answer and its
# group "ch" the channel name (of two markers at one name, the earlier pattern here wins).
_FINAL_MARKERS: tuple[tuple[re.Pattern[str], ParseStatus], ...] = (
    (re.compile(r"<\|channel\|>[ \t]*(?:commentary[ \t]+to=)?(?P<ch>final)\b[^<]{0,200}"
                r"(?:<\|constrain\|>[^<]{0,200})?<\|message\|>"), ParseStatus.OK_FINAL_CHANNEL),
    # stripped tokens leave the role and channel glued together: "assistantfinal"
    (re.compile(r"assistant(?P<ch>final)"), ParseStatus.OK_STRIPPED_FINAL),
    (re.compile(r"assistantcommentary[ \t]+to=(?P<ch>final)\b"), ParseStatus.OK_STRIPPED_FINAL),
    # the role, then junk where the channel marker should be: assistant",final{…}
    (re.compile(r"assistant[^A-Za-z{<]{1,8}(?P<ch>final)(?=[ \t]*(?:json[ \t]*)?\{)"), ParseStatus.OK_UNFRAMED),
)
# The channel name alone, its role lost (LoRA-tuned gpt-oss, tokens stripped): glued to the reasoning
# before it ("Output JSON.final{…}", "…hatefinal\nClassification: …") or opening the response, then at
# most a little junk (quotes, brackets, punctuation, whitespace, a code fence, "json", a leftover special
# token) and an answer: an object, a fence, a "classification:" key, or a bare label that ends the text.
# A quoted "final" key ({"final": "{…}"}) is not a marker: the reader takes that object apart whole.
# After a space "final" is a word of prose ("We output final {…} would be", "So final classification:
# hate"); it is a marker only before an object that closes the response ("… JSON. final{…}").
_GAP = r"(?:[^\w{<]|<\|(?:constrain|message|channel)\|>){0,16}"
_BARE_CHANNEL = re.compile(
    rf"(?P<ch>final)(?![\"']\s*:)(?:{_GAP}json){{0,2}}{_GAP}(?=\{{|```|[\"']?(?i:classification|label|prediction)\b[*_]{{0,3}}[\"']?\s*[:=]"
    rf"|(?i:hate|normal)[^\w<]{{0,16}}(?:<\|[a-z]{{1,20}}\|>\s*)*\Z)")
# The role with no channel at all before an object (<|start|>assistant<|message|>{…}, stripped: "JSON.assistant{…}").
_BARE_ROLE = re.compile(rf"(?P<ch>assistant)(?:{_GAP}json){{0,2}}{_GAP}(?=\{{|```)")
# A response that is itself an answer starts like one: a few non-letters and at most one short word
# (never the analysis channel's name) before an object, a fence or a "classification:" key.
_JUNK = r"[^A-Za-z{`]{0,16}"
_ANSWER_START = re.compile(
    rf"\A{_JUNK}(?:(?!analysis)[A-Za-z]{{1,12}}[^A-Za-z{{`]{{0,6}}(?:json[^A-Za-z{{`]{{0,3}})?)?(?=[{{`])", re.I)
# Before a plain "classification:" only a word of the frame may stand: reasoning such as
# "So classification: hate. Provide" must not become an answer.
_FRAME_WORD = r"(?:final|name|assistant|answer|output|response|json)[^A-Za-z]{0,6}"
_KEY_START = re.compile(
    rf"\A(?P<junk>{_JUNK}(?:{_FRAME_WORD})?)[\"']?(?:classification|label|prediction)\b[*_]{{0,3}}[\"']?\s*[:=]", re.I)
_BARE_LABEL = re.compile(r"\A[\s\"'`]*(?:hate|normal)[\s\"'`.]*\Z", re.I)
_CLOSING_JUNK = "`\"'.,;:!?)] \t\r\n"
_MAX_TEXT = 1_000_000  # longer responses are read from their last million characters


def parse_response(text: Any, stop_reason: Optional[str] = None) -> ParseResult:
    """Read the label from a response's final answer; ``unknown`` with a status when there is none.

    ``stop_reason`` is the backend's ``"stop"`` or ``"length"`` (None when not recorded): truncation
    is decided by it alone. Never raises: any input gives a result.
    """
    try:
        return _parse(response_text(text)[-_MAX_TEXT:], stop_reason if stop_reason in STOP_REASONS else None)
    except Exception as exc:  # noqa: BLE001 - the last guard: a bad response must never stop a run
        log.warning("parser error on a response (%s: %s); recorded as parser_error", type(exc).__name__, exc)
        return ParseResult(UNKNOWN, None, ParseStatus.PARSER_ERROR.value)


def response_text(value: Any) -> str:
    """Whatever an old record holds as its response, as text ("" for none; JSON for an object)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        try:
            value = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            value = repr(value)
    return value


def _parse(text: str, stop_reason: Optional[str]) -> ParseResult:
    if not text.strip():
        return ParseResult(UNKNOWN, None, ParseStatus.EMPTY.value)
    found = _last_final(text)
    if found is not None:
        answers, status = found
        reading = read_answer(answers[0])
        if reading.label is None and len(answers) > 1:
            reading = read_answer(answers[1])
        return _result(reading, status, stop_reason)
    bare = strip_special(text).strip()
    start = _ANSWER_START.match(bare)
    key = _KEY_START.match(bare)
    label_only = _BARE_LABEL.match(bare)
    if start or key or label_only:
        clean = (start and not start.group(0).strip()) or (key and not key.group("junk").strip())
        reading = read_answer(bare)
        direct = ParseStatus.OK_JSON if bare.startswith(("{", "`")) else ParseStatus.OK_PLAIN_TEXT
        return _result(reading, direct if clean or label_only else ParseStatus.OK_UNFRAMED, stop_reason)
    return ParseResult(UNKNOWN, None, _no_final_status(text, stop_reason).value)


def _last_final(text: str) -> Optional[tuple[list[str], ParseStatus]]:
    """The last final answer's text and how it was marked, or None; a second text to read when the
    first holds no label.

    A bare channel name (or role) after the last marked answer has ended starts a new answer
    (``ok_unframed``). One inside the marked answer (``…assistantfinal So classification: hate.
    final{…}``) starts the text read first, with the channel's status; the whole marked answer is
    read when that text holds no label.
    """
    marked: Optional[tuple[int, int, int, ParseStatus]] = None  # (channel name, -pattern, answer start)
    for rank, (pattern, status) in enumerate(_FINAL_MARKERS):
        for match in pattern.finditer(text):
            found = (match.start("ch"), -rank, match.end(), status)
            marked = found if marked is None or found[:2] > marked[:2] else marked
    bare = _last_bare(text, marked[0] + 1 if marked else 0)
    answer = lambda start: text[start: _answer_end(text, start)]  # noqa: E731
    if marked is None:
        return ([answer(bare)], ParseStatus.OK_UNFRAMED) if bare is not None else None
    if bare is None:
        return [answer(marked[2])], marked[3]
    if bare >= _answer_end(text, marked[2]):
        return [answer(bare)], ParseStatus.OK_UNFRAMED
    return [answer(bare), answer(marked[2])], marked[3]


def _last_bare(text: str, after: int) -> Optional[int]:
    """Where the answer after the last bare channel name (or role) at or after ``after`` starts."""
    best: Optional[tuple[int, int]] = None  # (channel name, answer start)
    closed: Optional[bool] = None  # whether the text ends with an object; computed once, when needed
    for pattern in (_BARE_CHANNEL, _BARE_ROLE):
        for match in pattern.finditer(text, after):
            if text[match.start() - 1: match.start()] in (" ", "\t"):  # prose, unless an object ends the text
                closed = _ends_with_object(text) if closed is None else closed
                if not (closed and text.startswith(("{", "`"), match.end())):
                    continue
            if best is None or match.start("ch") > best[0]:
                best = (match.start("ch"), match.end())
    return None if best is None else best[1]


def _ends_with_object(text: str) -> bool:
    """Whether the text ends with a closing brace (then at most a fence, punctuation, end tokens)."""
    return strip_special(text[-2000:]).rstrip(_CLOSING_JUNK).endswith("}")


def _answer_end(text: str, start: int) -> int:
    """Where the answer that starts at ``start`` ends: the next end token, else the end of the text."""
    end = _END.search(text, start)
    return end.start() if end else len(text)


def _result(reading: Reading, where: ParseStatus, stop_reason: Optional[str]) -> ParseResult:
    """A reading's label and status; a repaired reading of a direct answer counts as unframed."""
    if reading.label is None:  # an answer begun, then cut by the token limit before its label: truncated
        status = ParseStatus.NO_FINAL_ANSWER_TRUNCATED if stop_reason == "length" else ParseStatus.UNPARSABLE_FINAL
        return ParseResult(UNKNOWN, None, status.value)
    label = reading.label.strip().strip(".,;:!'\"`*_").lower()  # "hate." is hate
    label = _LABEL_ALIASES.get(label, label)
    if label not in VALID_LABELS:
        return ParseResult(UNKNOWN, reading.rationale, ParseStatus.INVALID_LABEL.value)
    if reading.repaired and where in (ParseStatus.OK_JSON, ParseStatus.OK_PLAIN_TEXT):
        where = ParseStatus.OK_UNFRAMED
    return ParseResult(label, reading.rationale, where.value)


def _no_final_status(text: str, stop_reason: Optional[str]) -> ParseStatus:
    """Truncated is a fact when the backend recorded why it stopped; otherwise the documented heuristic."""
    if stop_reason == "length":
        return ParseStatus.NO_FINAL_ANSWER_TRUNCATED
    if stop_reason == "stop":
        return ParseStatus.NO_FINAL_ANSWER
    last_message = text.rfind("<|message|>")
    if last_message < 0:
        return ParseStatus.NO_FINAL_ANSWER_LIKELY_TRUNCATED  # stripped text: see the status table
    ended = _END.search(text, last_message)
    return ParseStatus.NO_FINAL_ANSWER if ended else ParseStatus.NO_FINAL_ANSWER_LIKELY_TRUNCATED


def describe_status(status: str) -> str:
    """One line saying what a parse status means ("" for a status this module does not know)."""
    return STATUS_MEANINGS.get(status, "")
