"""hsd.parsing: every form of final answer is read; reasoning is never read.

The real-response test finds final-answer markers with its own, independent check and asserts
that every response holding one parses to the label of that answer's JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsd.parsing import ParseStatus, parse_response

SHARED = Path(__file__).parents[2].parent / "shared"
RECORDED = SHARED / "reference" / "recorded_runs"

HATE_JSON = '{"classification": "hate", "rationale": "slur against a group"}'
NORMAL_JSON = '{"classification":"normal","rationale":"neutral statement"}'
REASONING_SAYS_HATE = "We need to classify. This is hateful. So classification: hate. Provide rationale."
K_ANALYSIS = f"<|channel|>analysis<|message|>{REASONING_SAYS_HATE}<|end|>"
K_FINAL = "<|start|>assistant<|channel|>final<|message|>"

OK_FINAL, OK_STRIPPED = ParseStatus.OK_FINAL_CHANNEL.value, ParseStatus.OK_STRIPPED_FINAL.value
OK_JSON, OK_TEXT = ParseStatus.OK_JSON.value, ParseStatus.OK_PLAIN_TEXT.value

# (id, response, expected label, expected status)
CASES = [
    # harmony, special tokens kept
    ("kept-return", f"{K_ANALYSIS}{K_FINAL}{HATE_JSON}<|return|>", "hate", OK_FINAL),
    ("kept-end", f"{K_ANALYSIS}{K_FINAL}{NORMAL_JSON}<|end|>", "normal", OK_FINAL),
    ("kept-eos-padding", f"{K_ANALYSIS}{K_FINAL}{NORMAL_JSON}<|return|><|endoftext|><|endoftext|>", "normal", OK_FINAL),
    ("kept-end-of-text", f"{K_ANALYSIS}{K_FINAL}{HATE_JSON}", "hate", OK_FINAL),
    ("kept-constrain", f"{K_ANALYSIS}<|start|>assistant<|channel|>final <|constrain|>json<|message|>{NORMAL_JSON}<|return|>",
     "normal", OK_FINAL),
    ("kept-commentary-to-final",
     f"{K_ANALYSIS}<|start|>assistant<|channel|>commentary to=final <|constrain|>json<|message|>{HATE_JSON}<|call|>",
     "hate", OK_FINAL),
    ("kept-last-final-wins", f"{K_ANALYSIS}{K_FINAL}{HATE_JSON}<|end|>{K_FINAL}{NORMAL_JSON}<|return|>", "normal", OK_FINAL),
    ("kept-final-plain-text", f"{K_ANALYSIS}{K_FINAL}classification: Normal<|return|>", "normal", OK_FINAL),
    ("kept-final-fenced", f"{K_ANALYSIS}{K_FINAL}```json\n{HATE_JSON}\n```<|return|>", "hate", OK_FINAL),
    ("kept-final-cut-after-label", f'{K_ANALYSIS}{K_FINAL}{{"classification":"hate","rationale":"The te', "hate", OK_FINAL),
    # special tokens stripped (the old pipeline's outputs)
    ("stripped-final", f"analysis{REASONING_SAYS_HATE}assistantfinal{NORMAL_JSON}", "normal", OK_STRIPPED),
    ("stripped-ellipsis", f"…analysis{REASONING_SAYS_HATE}assistantfinal{HATE_JSON}", "hate", OK_STRIPPED),
    ("stripped-commentary-then-final",
     f"analysis{REASONING_SAYS_HATE}assistantcommentaryWe must output JSON.assistantfinal{NORMAL_JSON}", "normal", OK_STRIPPED),
    ("stripped-commentary-to-final", f"analysis{REASONING_SAYS_HATE}assistantcommentary to=final json{NORMAL_JSON}",
     "normal", OK_STRIPPED),
    ("stripped-commentary-to-final-constrain-kept",
     f"analysis{REASONING_SAYS_HATE}assistantcommentary to=final <|constrain|>json{NORMAL_JSON}", "normal", OK_STRIPPED),
    ("stripped-final-json-word", f"analysis{REASONING_SAYS_HATE}assistantfinal json{NORMAL_JSON}", "normal", OK_STRIPPED),
    ("leading-final", f"final{HATE_JSON}", "hate", OK_STRIPPED),
    ("leading-final-capital", f"Final {NORMAL_JSON}", "normal", OK_STRIPPED),
    ("leading-quote-final", f'"final{NORMAL_JSON}', "normal", OK_STRIPPED),
    ("stripped-last-final-wins", f"analysisxassistantfinal{HATE_JSON}assistantfinal{NORMAL_JSON}", "normal", OK_STRIPPED),
    # direct answers
    ("json", HATE_JSON, "hate", OK_JSON),
    ("json-fenced", f"```json\n{NORMAL_JSON}\n```", "normal", OK_JSON),
    ("json-fence-no-lang", f"```\n{HATE_JSON}\n```", "hate", OK_JSON),
    ("json-final-key", '{"final": "classification: normal"}', "normal", OK_JSON),
    ("json-extra-keys", '{"classification": "hate", "confidence": 0.9, "target": "lgbtq", "rationale": "x"}', "hate", OK_JSON),
    ("json-trailing-text", f"{NORMAL_JSON}\nI hope this helps.", "normal", OK_JSON),
    ("json-single-quotes", "{'classification': 'hate', 'rationale': 'demeaning'}", "hate", OK_JSON),
    ("json-single-quotes-apostrophe", "{'classification': 'normal', 'rationale': 'it's fine'}", "normal", OK_JSON),
    ("json-upper-case", '{"Classification": "HATE"}', "hate", OK_JSON),
    ("plain-text", "classification: hate", "hate", OK_TEXT),
    ("plain-text-rationale", "Classification: NORMAL\nRationale: neutral", "normal", OK_TEXT),
    ("bare-label", "Hate", "hate", OK_TEXT),
    # no final answer: unknown, whatever the reasoning says
    ("kept-truncated", "<|channel|>analysis<|message|>So classification: hate. Provide", "unknown",
     ParseStatus.NO_FINAL_ANSWER_TRUNCATED.value),
    ("kept-no-final", f"{K_ANALYSIS}<|return|>", "unknown", ParseStatus.NO_FINAL_ANSWER.value),
    ("stripped-truncated", f"analysis{REASONING_SAYS_HATE} But maybe", "unknown",
     ParseStatus.NO_FINAL_ANSWER_TRUNCATED.value),
    ("stripped-truncated-no-analysis-word", f"{REASONING_SAYS_HATE} So", "unknown",
     ParseStatus.NO_FINAL_ANSWER_TRUNCATED.value),
    ("reasoning-starting-with-key-word", "Classification of this text: it says hate? So", "unknown",
     ParseStatus.NO_FINAL_ANSWER_TRUNCATED.value),
    ("empty", "", "unknown", ParseStatus.EMPTY.value),
    ("whitespace", " \n ", "unknown", ParseStatus.EMPTY.value),
    ("none", None, "unknown", ParseStatus.EMPTY.value),
    ("invalid-label", f'analysisxassistantfinal{{"classification": "offensive"}}', "unknown",
     ParseStatus.INVALID_LABEL.value),
    ("invalid-label-kept", f'{K_ANALYSIS}{K_FINAL}{{"classification": "not hate"}}<|return|>', "unknown",
     ParseStatus.INVALID_LABEL.value),
    ("unparsable-final", f"analysis{REASONING_SAYS_HATE}assistantfinalI cannot help with that.", "unknown",
     ParseStatus.UNPARSABLE_FINAL.value),
    ("empty-final", f"{K_ANALYSIS}{K_FINAL}<|return|>", "unknown", ParseStatus.UNPARSABLE_FINAL.value),
]


@pytest.mark.parametrize("text,label,status", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_forms(text, label, status):
    result = parse_response(text)
    assert (result.label, result.status) == (label, status)
    assert result.status.startswith("ok") == (label != "unknown")


def test_rationale_is_read():
    assert parse_response(f"analysisxassistantfinal{HATE_JSON}").rationale == "slur against a group"
    assert parse_response("Classification: NORMAL\nRationale: neutral").rationale == "neutral"
    assert parse_response(f"{K_ANALYSIS}{K_FINAL}{{\"classification\":\"hate\"}}<|return|>").rationale is None


def test_reasoning_is_never_read():
    """The old parser's bug: label words in the reasoning became predictions."""
    for text in (REASONING_SAYS_HATE, f"analysis{REASONING_SAYS_HATE}", f"<|channel|>analysis<|message|>{REASONING_SAYS_HATE}"):
        assert parse_response(text).label == "unknown"


def test_every_status_is_documented():
    for status in ParseStatus:
        assert status.value in ParseStatus.__doc__, status
        assert status.ok == status.value.startswith("ok")


def _recorded_rows() -> list[dict]:
    files = sorted(RECORDED.glob("*/intermediate_results_*.jsonl"))
    if not files:
        pytest.skip(f"no recorded runs under {RECORDED} (../shared beside the repository)")
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def _independent_final(raw: str) -> str | None:
    """The final answer's JSON label, found without hsd.parsing: text after the last marker."""
    for marker in ("<|channel|>final<|message|>", "assistantfinal", "assistantcommentary to=final"):
        if marker in raw:
            tail = raw.rsplit(marker, 1)[1]
            return json.loads(tail[tail.index("{"): tail.rindex("}") + 1])["classification"]
    return None


def test_recorded_responses_every_final_answer_is_read():
    rows = _recorded_rows()
    with_final = [(r, _independent_final(r["raw_response"])) for r in rows]
    answered = [(r, label) for r, label in with_final if label is not None]
    assert len(rows) == 253 and len(answered) == 250  # the shared run: 3 responses cut off
    for row, label in answered:
        result = parse_response(row["raw_response"])
        assert result.status == OK_STRIPPED and result.label == label.lower(), row["sample_id"]
        assert result.rationale


def test_recorded_responses_without_final_are_truncated_unknown():
    rows = [r for r in _recorded_rows() if _independent_final(r["raw_response"]) is None]
    assert len(rows) == 3
    for row in rows:
        result = parse_response(row["raw_response"])
        assert (result.label, result.status) == ("unknown", ParseStatus.NO_FINAL_ANSWER_TRUNCATED.value)


def test_recorded_responses_with_special_tokens_restored():
    """The same answers as they would look decoded with special tokens kept."""
    for row in _recorded_rows()[:60]:
        raw = row["raw_response"]
        if "assistantfinal" not in raw:
            continue
        reasoning, answer = raw.rsplit("assistantfinal", 1)
        kept = f"<|channel|>analysis<|message|>{reasoning}<|end|>{K_FINAL}{answer}<|return|>"
        assert parse_response(kept).label == parse_response(raw).label != "unknown"
        assert parse_response(kept).status == OK_FINAL
