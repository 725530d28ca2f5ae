"""hsd.parsing on adversarial input: it never raises, stays fast, and keeps its promises.

Property-based (Hypothesis) over strings built from the pieces that broke the old parser —
braces, quotes, escaped quotes, harmony special tokens, label keys, deep nesting, unicode,
NULs — and over token sequences decoded by the real (tiny) harmony tokenizer; then a seeded
30,000-string generator loop that must raise 0 times (the old parser raised TypeError on 7 of
these 30,000, and on 123 of 30,000 of the issue's own generated check).
"""

from __future__ import annotations

import json
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsd.parsing import STOP_REASONS, ParseStatus, parse_response

STATUSES = {s.value for s in ParseStatus}
PIECES = ["{", "}", "{{", "}}", "[", "]", '"', "'", '\\"', "\\\\", ":", ",", "=", "#", "-", "1", "`", "```json\n",
          "final", "assistantfinal", "assistantcommentary to=final json", "analysis", "name", "commentary",
          "classification", "Classification", "rationale", "label", "hate", "normal", "HATE", "not hate",
          "<|channel|>", "<|message|>", "<|start|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>",
          "<|endoftext|>", "<|", "|>", "\x00", "\ufffd", "\ud800", "\u202e", "é", "ß", "😀", "\n", " ", "\t", "…",
          # issue 27: a stripped channel name with junk, answers held in string values
          'final"', "final]", "final\n\n```json", ".final", "final json", '{"message": "', '"}', '\\"}"', "LABEL:",
          "RATIONALE:", '"{\\"', "finally"]
# derandomize: CI sees the same examples every run; no example database written into the tree.
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

pieces = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=40).map("".join)
stop_reasons = st.sampled_from((None, *STOP_REASONS, "bogus"))


def _check(result) -> None:
    """Every result is well formed: a known label, a documented status, ok exactly when labelled."""
    assert result.label in ("hate", "normal", "unknown")
    assert result.status in STATUSES and result.status != ParseStatus.PARSER_ERROR.value
    assert result.status.startswith("ok") == (result.label != "unknown")
    assert result.rationale is None or isinstance(result.rationale, str)


@SETTINGS
@given(text=pieces, stop_reason=stop_reasons)
def test_any_string_gives_a_well_formed_result(text, stop_reason):
    _check(parse_response(text, stop_reason=stop_reason))


@SETTINGS
@given(text=st.text(st.characters(codec=None), max_size=200))
def test_any_unicode_text(text):
    _check(parse_response(text))


# Reasoning never holds the answer: whatever it says, with no final marker it is unknown.
reasoning = pieces.filter(lambda s: "final" not in s.lower())


@SETTINGS
@given(body=reasoning, opening=st.sampled_from(["analysis", "<|channel|>analysis<|message|>", "…analysis"]),
       stop_reason=stop_reasons)
def test_reasoning_is_never_read(body, opening, stop_reason):
    result = parse_response(opening + body, stop_reason=stop_reason)
    assert result.label == "unknown"
    if stop_reason == "length" and result.status != ParseStatus.EMPTY.value:
        assert result.status == ParseStatus.NO_FINAL_ANSWER_TRUNCATED.value


# A complete answer in any frame is read, with its rationale, whatever the rationale holds.
rationales = st.text(st.characters(codec=None, exclude_characters="<"), max_size=60)
FRAMES = {
    "kept": lambda a: f"<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>final<|message|>{a}<|return|>",
    "stripped": lambda a: f"analysisx.assistantfinal{a}",
    "junk": lambda a: f'",final{a}',
    "name": lambda a: f'",name{a}',
    "doubled": lambda a: f"{{{a}}}",
    "nested": lambda a: json.dumps({"final": a}),
    "direct": lambda a: a,
}


@SETTINGS
@given(label=st.sampled_from(["hate", "normal", "Hate", "NORMAL"]), rationale=rationales,
       frame=st.sampled_from(sorted(FRAMES)), stop_reason=stop_reasons)
def test_a_complete_answer_is_read_in_every_frame(label, rationale, frame, stop_reason):
    answer = json.dumps({"classification": label, "rationale": rationale}, ensure_ascii=False)
    result = parse_response(FRAMES[frame](answer), stop_reason=stop_reason)
    assert result.label == label.lower(), result
    assert result.rationale == (rationale or None) or rationale.strip() == "", result


# Issue 27: reasoning (which may name a label, or hold JSON), the final channel's name glued to it with
# junk before the answer, the answer in any form: the answer's label wins, whatever the reasoning says.
GAPS = ["", '"', "]", "\n\n```json", "\n\n```json\n", " json", "<|constrain|>json", ":", "\n", "```", '",', "}"]
ANSWER_FORMS = {
    "json": lambda lab, r: json.dumps({"classification": lab, "rationale": r}, ensure_ascii=False),
    "message-unescaped": lambda lab, r: '{"message": "' + json.dumps({"classification": lab, "rationale": r},
                                                                    ensure_ascii=False) + '"}',
    "message-escaped": lambda lab, r: json.dumps({"message": json.dumps({"classification": lab, "rationale": r})}),
    "json-string": lambda lab, r: json.dumps(json.dumps({"classification": lab, "rationale": r})),
    "label-text": lambda lab, r: f"LABEL: {lab}\nRATIONALE: {r}",
    "label-markdown": lambda lab, r: f"**Label:** {lab}\n**Rationale:** {r}",
    "fenced": lambda lab, r: "```json\n" + json.dumps({"classification": lab, "rationale": r}) + "\n```",
}
plain_rationales = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters='<"\\'),
                           max_size=40)


@SETTINGS
@given(body=reasoning, said=st.sampled_from(["hate", "normal", '{"classification": "hate"}', "{\"classification\": \"normal"]),
       role=st.sampled_from(["", "assistant"]), gap=st.sampled_from(GAPS), label=st.sampled_from(["hate", "normal", "HATE"]),
       form=st.sampled_from(sorted(ANSWER_FORMS)), rationale=plain_rationales, stop_reason=stop_reasons)
def test_the_final_answer_after_reasoning_wins(body, said, role, gap, label, form, rationale, stop_reason):
    text = f"analysis{body} So classification: {said}. Output JSON.{role}final{gap}{ANSWER_FORMS[form](label, rationale)}"
    result = parse_response(text, stop_reason=stop_reason)
    _check(result)
    assert result.label == label.lower(), (text, result)


@pytest.mark.parametrize("text", [
    "{" * 200_000, "[" * 200_000, '{"final": ' * 20_000, '{"final": "' + '\\"' * 100_000, '"' * 300_000,
    "rationale: " + "'" * 200_000, "classification:" * 50_000, "assistantfinal" * 50_000,
    "<|channel|>final" * 50_000, "<|channel|>final<|message|>" + "{" * 100_000, "\x00" * 500_000,
    "a" * 2_000_000, '{"classification": ' * 30_000, "{{" * 100_000 + '"classification": "hate"',
    "final" * 200_000, 'x.final"' * 100_000, "final hate" + "<|end|>" * 100_000, "}" * 300_000 + "final{",
    '{"message": "' * 50_000, " final{" * 100_000 + "}", " assistant{" * 100_000, '{"a": ' * 100 + '"{\\"message\\": ' * 1000,
], ids=lambda t: repr(t[:16]))
def test_huge_and_deeply_nested_input_is_fast(text):
    started = time.perf_counter()
    _check(parse_response(text))
    assert time.perf_counter() - started < 3.0


def _adversarial(rng: random.Random) -> str:
    """One string: fragments, random code points (NUL and lone surrogates included), nesting bursts."""
    parts = []
    for _ in range(rng.randint(0, 30)):
        roll = rng.random()
        if roll < 0.6:
            parts.append(rng.choice(PIECES))
        elif roll < 0.85:
            parts.append("".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 6))))
        else:
            parts.append(rng.choice(["{", "[", '{"final": "', "{'a': ", '\\"']) * rng.randint(2, 400))
    return "".join(parts)


def test_thirty_thousand_adversarial_strings_raise_zero_times():
    rng = random.Random(13)
    raised, labelled = [], 0
    for i in range(30_000):
        text = _adversarial(rng)
        try:
            result = parse_response(text, stop_reason=rng.choice((None, "stop", "length")))
        except Exception as exc:  # noqa: BLE001 - counted, then reported
            raised.append((i, type(exc).__name__))
            continue
        _check(result)
        labelled += result.label != "unknown"
    assert raised == []
    assert labelled > 100  # the generator does reach the answer readers (158 with seed 13)


@pytest.fixture(scope="module")
def harmony_tokenizer():
    """gpt-oss's o200k_harmony tokenizer as the tiny model uses it (built once, then cached)."""
    from hsd.models.fullsize import harmony_tokenizer as load

    return load()


def test_any_token_sequence_decodes_to_a_well_formed_result(harmony_tokenizer):
    vocab = len(harmony_tokenizer)

    @SETTINGS
    @given(ids=st.lists(st.integers(0, vocab - 1), max_size=120), skip=st.booleans(), stop_reason=stop_reasons)
    def check(ids, skip, stop_reason):
        text = harmony_tokenizer.decode(ids, skip_special_tokens=skip)
        _check(parse_response(text, stop_reason=stop_reason))

    check()


def test_kept_and_stripped_decodings_of_one_answer_agree(harmony_tokenizer):
    """The same generated tokens read the same label whether special tokens were kept or stripped."""

    @SETTINGS
    @given(label=st.sampled_from(["hate", "normal"]), rationale=st.text(st.characters(exclude_characters="<"), max_size=40))
    def check(label, rationale):
        answer = json.dumps({"classification": label, "rationale": rationale})
        text = (f"<|channel|>analysis<|message|>We need to classify.<|end|><|start|>assistant"
                f"<|channel|>final<|message|>{answer}<|return|>")
        ids = harmony_tokenizer(text, add_special_tokens=False)["input_ids"]
        kept = parse_response(harmony_tokenizer.decode(ids, skip_special_tokens=False), stop_reason="stop")
        stripped = parse_response(harmony_tokenizer.decode(ids, skip_special_tokens=True))
        assert (kept.label, kept.status) == (label, ParseStatus.OK_FINAL_CHANNEL.value)
        assert (stripped.label, stripped.status) == (label, ParseStatus.OK_STRIPPED_FINAL.value)
        assert kept.rationale == stripped.rationale

    check()
