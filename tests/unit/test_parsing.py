"""hsd.parsing: every form of final answer is read; reasoning is never read.

The real-response test finds final-answer markers with its own, independent check and asserts
that every response holding one parses to the label of that answer's JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsd.parsing import ParseStatus, describe_status, parse_response

SHARED = Path(__file__).parents[2].parent / "shared"
RECORDED = SHARED / "reference" / "recorded_runs"

HATE_JSON = '{"classification": "hate", "rationale": "slur against a group"}'
NORMAL_JSON = '{"classification":"normal","rationale":"neutral statement"}'
REASONING_SAYS_HATE = "We need to classify. This is hateful. So classification: hate. Provide rationale."
K_ANALYSIS = f"<|channel|>analysis<|message|>{REASONING_SAYS_HATE}<|end|>"
K_FINAL = "<|start|>assistant<|channel|>final<|message|>"

OK_FINAL, OK_STRIPPED = ParseStatus.OK_FINAL_CHANNEL.value, ParseStatus.OK_STRIPPED_FINAL.value
OK_JSON, OK_TEXT = ParseStatus.OK_JSON.value, ParseStatus.OK_PLAIN_TEXT.value
OK_UNFRAMED = ParseStatus.OK_UNFRAMED.value
TRUNCATED, LIKELY_TRUNCATED = ParseStatus.NO_FINAL_ANSWER_TRUNCATED.value, ParseStatus.NO_FINAL_ANSWER_LIKELY_TRUNCATED.value

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
    ("leading-final", f"final{HATE_JSON}", "hate", OK_UNFRAMED),
    ("leading-final-capital", f"Final {NORMAL_JSON}", "normal", OK_UNFRAMED),
    ("leading-quote-final", f'"final{NORMAL_JSON}', "normal", OK_UNFRAMED),
    ("stripped-last-final-wins", f"analysisxassistantfinal{HATE_JSON}assistantfinal{NORMAL_JSON}", "normal", OK_STRIPPED),
    # direct answers
    ("json", HATE_JSON, "hate", OK_JSON),
    ("json-fenced", f"```json\n{NORMAL_JSON}\n```", "normal", OK_JSON),
    ("json-fence-no-lang", f"```\n{HATE_JSON}\n```", "hate", OK_JSON),
    ("json-final-key", '{"final": "classification: normal"}', "normal", OK_UNFRAMED),
    ("json-extra-keys", '{"classification": "hate", "confidence": 0.9, "target": "lgbtq", "rationale": "x"}', "hate", OK_JSON),
    ("json-trailing-text", f"{NORMAL_JSON}\nI hope this helps.", "normal", OK_JSON),
    ("json-single-quotes", "{'classification': 'hate', 'rationale': 'demeaning'}", "hate", OK_JSON),
    ("json-single-quotes-apostrophe", "{'classification': 'normal', 'rationale': 'it's fine'}", "normal", OK_JSON),
    ("json-upper-case", '{"Classification": "HATE"}', "hate", OK_JSON),
    ("json-label-punctuation", '{"classification": "Normal."}', "normal", OK_JSON),
    ("plain-text", "classification: hate", "hate", OK_TEXT),
    ("plain-text-rationale", "Classification: NORMAL\nRationale: neutral", "normal", OK_TEXT),
    ("bare-label", "Hate", "hate", OK_TEXT),
    # no final answer: unknown, whatever the reasoning says
    ("kept-truncated", "<|channel|>analysis<|message|>So classification: hate. Provide", "unknown",
     LIKELY_TRUNCATED),
    ("kept-no-final", f"{K_ANALYSIS}<|return|>", "unknown", ParseStatus.NO_FINAL_ANSWER.value),
    ("stripped-truncated", f"analysis{REASONING_SAYS_HATE} But maybe", "unknown",
     LIKELY_TRUNCATED),
    ("stripped-truncated-no-analysis-word", f"{REASONING_SAYS_HATE} So", "unknown",
     LIKELY_TRUNCATED),
    ("reasoning-starting-with-key-word", "Classification of this text: it says hate? So", "unknown",
     LIKELY_TRUNCATED),
    ("empty", "", "unknown", ParseStatus.EMPTY.value),
    ("whitespace", " \n ", "unknown", ParseStatus.EMPTY.value),
    ("none", None, "unknown", ParseStatus.EMPTY.value),
    ("invalid-label", 'analysisxassistantfinal{"classification": "offensive"}', "unknown",
     ParseStatus.INVALID_LABEL.value),
    ("label-with-noun", 'analysisxassistantfinal{"classification": "Hate speech"}', "hate", OK_STRIPPED),
    ("invalid-label-non-hate", 'analysisxassistantfinal{"classification": "non-hate"}', "unknown",
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


# Complete answers written by the LoRA-tuned gpt-oss with its harmony frame broken (issue 13), as the
# whole response, special tokens stripped: every one is an answer, none a truncation.
HATE_BODY = '{"classification": "hate", "rationale": "slur against a group"}'
NORMAL_BODY = '{"classification": "normal", "rationale": "a neutral remark"}'
ESCAPED = '{"classification": \\"hate\\", \\"rationale\\": \\"slur against a group\\"}'
BROKEN_FRAME = [
    ("junk-quote-comma", f'",final{HATE_BODY}', "hate", "slur against a group"),
    ("junk-name", f'",name{NORMAL_BODY}', "normal", "a neutral remark"),
    ("junk-hash", f"#final{HATE_BODY}", "hate", "slur against a group"),
    ("junk-dash", f"-final{NORMAL_BODY}", "normal", "a neutral remark"),
    ("junk-digit", f"1final{HATE_BODY}", "hate", "slur against a group"),
    ("junk-equals", f'",=final{NORMAL_BODY}', "normal", "a neutral remark"),
    ("junk-close", f'"}}final{HATE_BODY}', "hate", "slur against a group"),
    ("junk-replacement-char", f"\ufffdfinal{NORMAL_BODY}", "normal", "a neutral remark"),
    ("junk-then-role", f'analysisshort.assistant",final{HATE_BODY}', "hate", "slur against a group"),
    ("nested-string-invalid-json", f'{{"final": "{ESCAPED}"}}', "hate", "slur against a group"),
    ("nested-string-valid-json", json.dumps({"final": NORMAL_BODY}), "normal", "a neutral remark"),
    ("nested-object", f'{{"final": {HATE_BODY}}}', "hate", "slur against a group"),
    ("nested-key-value", '{"final": "classification: normal"}', "normal", None),
    ("doubled-braces", f"{{{HATE_BODY}}}", "hate", "slur against a group"),
    ("doubled-braces-junk", f'",final{{{NORMAL_BODY}}}', "normal", "a neutral remark"),
    ("doubled-braces-trailing-newline", f"{{{NORMAL_BODY}}}\n", "normal", "a neutral remark"),
    ("kept-tokens-junk", f'<|channel|>",final{HATE_BODY}<|return|>', "hate", "slur against a group"),
    ("key-colon-object", f'"final": {HATE_BODY}', "hate", "slur against a group"),
    ("word-equals-object", f"answer={NORMAL_BODY}", "normal", "a neutral remark"),
    ("role-without-channel", f"<|start|>assistant<|message|>{HATE_BODY}<|return|>", "hate", "slur against a group"),
    ("frame-word-key-value", "final\nClassification: normal\nRationale: a neutral remark", "normal", "a neutral remark"),
    ("junk-key-value", '",classification: hate', "hate", None),
]


@pytest.mark.parametrize("text,label,rationale", [c[1:] for c in BROKEN_FRAME], ids=[c[0] for c in BROKEN_FRAME])
def test_broken_frame_answers_are_read_as_unframed(text, label, rationale):
    for stop_reason in (None, "stop", "length"):  # a complete answer is never "truncated"
        result = parse_response(text, stop_reason=stop_reason)
        assert (result.label, result.rationale, result.status) == (label, rationale, OK_UNFRAMED), stop_reason


def test_plain_key_value_answer():
    result = parse_response("Classification: hate\nRationale: demeans a group by origin")
    assert (result.label, result.rationale, result.status) == ("hate", "demeans a group by origin", OK_TEXT)


@pytest.mark.parametrize("text", [
    f'{K_FINAL}",final{HATE_BODY}<|return|>', f"{K_ANALYSIS}{K_FINAL}{{{HATE_BODY}}}<|return|>",
    f'analysisxassistantfinal{{"final": "{ESCAPED}"}}',
], ids=["kept-final-junk", "kept-final-doubled", "stripped-final-nested"])
def test_broken_answers_inside_a_final_channel_keep_the_channel_status(text):
    assert parse_response(text).label == "hate" and parse_response(text).status in (OK_FINAL, OK_STRIPPED)


# Reasoning that mentions the answer format is not an answer, whatever it holds.
REASONING_ONLY = [
    "analysis{\"classification\": \"hate\"}",
    f'analysisWe must output {HATE_BODY} maybe. The text',
    f"<|channel|>analysis<|message|>Output {HATE_BODY}? Let's",
    "<|channel|>analysis<|message|>classification: hate",
    "We need to classify. final{\"classification\": \"hate\"} would be",
    "The user wants a classification: hate or normal. Let's",
    "So classification: hate. Provide rationale",
    "We classification: hate",
]


@pytest.mark.parametrize("text", REASONING_ONLY)
def test_reasoning_only_stays_unknown(text):
    assert parse_response(text).label == "unknown"
    assert parse_response(text, stop_reason="length").status == TRUNCATED
    assert parse_response(text, stop_reason="stop").status == ParseStatus.NO_FINAL_ANSWER.value


@pytest.mark.parametrize("stop_reason,status", [
    ("length", TRUNCATED), ("stop", ParseStatus.NO_FINAL_ANSWER.value), (None, LIKELY_TRUNCATED),
    ("garbage", LIKELY_TRUNCATED),
])
def test_truncated_only_when_generation_hit_the_length_limit(stop_reason, status):
    cut = "<|channel|>analysis<|message|>So classification: hate. Provide"
    assert parse_response(cut, stop_reason=stop_reason).status == status
    # an answer cut off before its label: truncated when the limit cut it, else an unreadable answer
    begun = f'{K_FINAL}{{"classif'
    want = TRUNCATED if stop_reason == "length" else ParseStatus.UNPARSABLE_FINAL.value
    assert parse_response(begun, stop_reason=stop_reason).status == want
    # an answer cut off after its label is still an answer
    assert parse_response(f'{K_FINAL}{{"classification":"hate","ration', stop_reason=stop_reason).status == OK_FINAL


@pytest.mark.parametrize("value,label,status", [
    (b'{"classification": "hate"}', "hate", OK_JSON), ({"classification": "normal"}, "normal", OK_JSON),
    ({"a": {"b": 1}}, "unknown", ParseStatus.UNPARSABLE_FINAL.value), (42, "unknown", LIKELY_TRUNCATED),
    (["hate"], "unknown", LIKELY_TRUNCATED), (float("nan"), "unknown", LIKELY_TRUNCATED),
])
def test_any_value_is_a_response(value, label, status):
    """Old records hold whatever their writer put there; the parser takes it, never raises."""
    assert (parse_response(value).label, parse_response(value).status) == (label, status)


def test_the_crash_of_the_old_parser():
    """``ast.literal_eval`` raised TypeError (unhashable dict) on this single-quoted doubled-brace answer."""
    text = "{{'classification': 'normal', 'rationale': 'not hateful'}}"
    result = parse_response(text)
    assert (result.label, result.rationale, result.status) == ("normal", "not hateful", OK_UNFRAMED)


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
        assert describe_status(status.value), status


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
        assert (result.label, result.status) == ("unknown", LIKELY_TRUNCATED)


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


# --- issue 27: the post-fine-tuning shapes left when decoding stripped the special tokens ---------------
# Reasoning that names one label, then the final channel's name without its role (glued to the
# reasoning, with junk before the answer), then an answer with the OTHER label: the answer wins.
REASONING_HATE = "analysisWe need to classify. It demeans a group. So classification: hate. Provide JSON."
REASONING_NORMAL_JSON = 'We need to classify. Maybe {"classification": "normal"}? No, it is a slur. Provide JSON.'
JOINS = ["final", 'final"', "final]", "final\n\n```json", "final\n\n```json\n", "final json", "final<|constrain|>json",
         '"final"', "final\n", "<|end|>final", "final:", "\ufffdfinal", "assistantfinal\n\n```json", 'assistantfinal"']
ANSWERS = {  # label -> answer text in each shape
    "json": lambda lab: f'{{"classification": "{lab}", "rationale": "r"}}',
    "json-fenced-closed": lambda lab: f'{{"classification": "{lab}", "rationale": "r"}}```',
    "message-unescaped": lambda lab: f'{{"message": "{{"classification": "{lab}", "rationale": "r"}}"}}',
    "message-escaped": lambda lab: json.dumps({"message": json.dumps({"classification": lab, "rationale": "r"})}),
    "rationale-holds-answer": lambda lab: f'{{"rationale": "{{"classification": "{lab}", "rationale": "r"}}"}}',
    "label-holds-answer": lambda lab: json.dumps({"classification": json.dumps({"classification": lab, "rationale": "r"})}),
    "json-string": lambda lab: json.dumps(json.dumps({"classification": lab, "rationale": "r"})),
    "label-rationale-text": lambda lab: f"LABEL: {lab.upper()}\nRATIONALE: r",
    "classification-text": lambda lab: f"Classification: {lab}\nRationale: r",
    "bare-label": lambda lab: lab,
}


@pytest.mark.parametrize("shape", sorted(ANSWERS))
@pytest.mark.parametrize("join", JOINS)
@pytest.mark.parametrize("reasoning,said", [(REASONING_HATE, "hate"), (REASONING_NORMAL_JSON, "normal")],
                         ids=["reasoning-text", "reasoning-json"])
def test_the_final_answer_after_reasoning_wins(reasoning, said, join, shape):
    answer = "normal" if said == "hate" else "hate"
    result = parse_response(reasoning + join + ANSWERS[shape](answer))
    assert result.label == answer, result
    assert result.status in (OK_UNFRAMED, OK_STRIPPED), result
    if shape not in ("bare-label",):
        assert result.rationale == "r", result


@pytest.mark.parametrize("text,label", [
    (f"{REASONING_HATE} final{NORMAL_JSON}", "normal"),  # a spaced "final" before an object that ends the response
    (f"{REASONING_HATE} final\n```json\n{NORMAL_JSON}\n```", "normal"),
    (f'{REASONING_HATE} final{NORMAL_JSON} would be wrong, so', "unknown"),  # prose: text follows the object
    (f"{REASONING_HATE} So final classification: normal. Provide", "unknown"),  # prose, not a channel
    (f"{REASONING_HATE} finally{NORMAL_JSON}", "unknown"),  # a word that starts with final
    (f'{REASONING_HATE}assistantfinal{{"final": "{{\\"classification\\": \\"normal\\"}}"}}', "normal"),
    (f"{REASONING_HATE}final{HATE_JSON}<|end|>final{NORMAL_JSON}", "normal"),  # the last final answer wins
    (f"{K_ANALYSIS}{K_FINAL}{NORMAL_JSON}<|return|>", "normal"),
    (f"{REASONING_HATE}assistant{NORMAL_JSON}", "normal"),  # the role with no channel at all
    (f"{K_ANALYSIS}<|start|>assistant<|message|>{NORMAL_JSON}<|return|>", "normal"),
    (f"{REASONING_HATE} The assistant {NORMAL_JSON} is one option. So", "unknown"),
    # reasoning inside the final channel, then the channel name again: the answer after it wins
    (f'{REASONING_HATE}assistantfinal So classification: hate. final{{"message": "{{"classification": "normal"}}"}}',
     "normal"),
    # a "final" inside the answer that starts no answer: the marked answer is read
    (f'{REASONING_HATE}assistantfinal{{"classification": "normal", "rationale": "the verdict is final: hate"}}', "normal"),
    (f'{REASONING_HATE}assistantfinal{{"classification": "normal", "rationale": "final {{x}}"}}', "normal"),
], ids=["spaced-object-at-end", "spaced-fence-at-end", "spaced-prose", "spaced-key-prose", "finally",
        "stripped-nested-final-key", "two-bare-finals", "kept", "stripped-role-no-channel", "kept-role-no-channel",
        "role-in-prose", "reasoning-in-final-channel", "final-word-in-rationale", "spaced-final-in-rationale"])
def test_bare_final_is_a_marker_only_where_an_answer_follows(text, label):
    assert parse_response(text).label == label


@pytest.mark.parametrize("text,label,rationale", [
    ('{"message": "{"classification": "hate", "rationale": "it says "go back" to a group"}"}', "hate",
     'it says "go back" to a group'),
    ('{"response": {"classification": "normal", "rationale": "x"}}', "normal", "x"),
    ('{"output": [{"classification": "hate", "rationale": "x"}]}', "hate", "x"),
    ('{"message": "hate"}', "hate", None),
    ('{"answer": "Normal.", "rationale": "x"}', "normal", "x"),
    ('"{\\"classification\\": \\"normal\\", \\"rationale\\": \\"a \\\\\\"quoted\\\\\\" word\\"}"', "normal", 'a "quoted" word'),
    ('{"classification": "{\\"classification\\": \\"hate\\"}"}', "hate", None),
    ('{"a": "hate", "b": "normal"}', "unknown", None),  # two bare labels: no answer
], ids=["message-unescaped-inner-quotes", "response-object", "output-list", "message-bare-label", "answer-key",
        "escaped-string-with-escaped-quotes", "label-holds-escaped-answer", "ambiguous-values"])
def test_answers_held_in_string_values(text, label, rationale):
    result = parse_response(text)
    assert (result.label, result.rationale) == (label, rationale), result


def test_reshaped_recorded_responses_read_the_recorded_answer():
    """Every recorded response rebuilt in every issue-27 shape (its own reasoning, a stripped final name
    with junk, the recorded answer in each form): the label is the recorded final JSON's."""
    for row in _recorded_rows():
        raw = row["raw_response"]
        truth = _independent_final(raw)
        if truth is None:
            continue
        reasoning, tail = raw.rsplit("assistantfinal", 1)
        answer = json.loads(tail[tail.index("{"): tail.rindex("}") + 1])
        for join in JOINS[int(row["sample_id"]) % 4::4]:
            for shape in ANSWERS.values():
                text = reasoning + join + shape(answer["classification"]).replace('"r"', json.dumps(answer["rationale"]))
                result = parse_response(text)
                assert result.label == truth.lower(), (row["sample_id"], join, text[-200:], result)


@pytest.mark.parametrize("text,label,rationale", [
    ("LABEL: normal\nRATIONALE: no group is attacked", "normal", "no group is attacked"),
    ("**Label:** hate\n**Rationale:** a slur", "hate", "a slur"),
    ("**LABEL**: Normal\nRATIONALE: fine", "normal", "fine"),
    ("LABEL: **hate**\nRATIONALE: a slur", "hate", "a slur"),
    ("Label: [normal]", "normal", None),
    (f"{REASONING_HATE}final**Label:** normal", "normal", None),
    (f"{REASONING_HATE}assistantfinal**Classification**: Normal\n**Rationale**: x", "normal", "x"),
    (f"{REASONING_HATE}assistantfinal<|constrain|>jsonLABEL: normal\nRATIONALE: x", "normal", "x"),
    (f"{REASONING_HATE}final json\nClassification: normal\nRationale: x", "normal", "x"),
    (f'{REASONING_HATE}assistantfinal```)```json\n{{"classification": "normal", "rationale": "x"}}\n```', "normal", "x"),
    (f'{REASONING_HATE}final jsonjson{{"classification": "normal", "rationale": "x"}}', "normal", "x"),
], ids=["label-rationale", "bold-key-colon-inside", "bold-key-colon-outside", "bold-value", "bracketed-value",
        "bare-final-bold", "stripped-final-bold", "json-tag-glued-to-key", "json-tag-line", "junk-between-fences",
        "two-json-tags"])
def test_label_and_rationale_text_answers(text, label, rationale):
    result = parse_response(text)
    assert (result.label, result.rationale) == (label, rationale), result
