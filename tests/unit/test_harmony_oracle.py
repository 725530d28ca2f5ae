"""openai-harmony (OpenAI's reference renderer and parser for gpt-oss) as the oracle for hsd.

openai-harmony reads the o200k_base.tiktoken that hsd.models.o200k rebuilt (TIKTOKEN_ENCODINGS_BASE;
it checks the same sha256), so nothing is downloaded. Checked against it:

* gpt-oss's tokenizer as hsd builds it encodes dataset texts, unicode, every special token and a
  rendered harmony conversation to the same ids;
* hsd's prompts (rich and simple, each reasoning effort, pinned dates) and training conversations
  are the token sequences openai-harmony renders for the same messages, except one named
  difference (see ``DEVELOPER_TAIL``);
* hsd's parser reads the same final answer as ``parse_messages_from_completion_tokens`` from
  well-formed harmony completions, with special tokens kept and stripped.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from hsd.config import load_config
from hsd.data import load_split
from hsd.models import o200k
from hsd.parsing import parse_response
from hsd.prompts import Prompter

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED_DATA / "unified").is_dir(), reason=f"{SHARED_DATA} not present")

# The one difference between hsd's prompts and openai-harmony's: gpt-oss's own chat template (the
# released chat_template.jinja, which hsd's template equals: tests/unit/test_chat_template.py) ends
# the developer message's instructions with "\n\n" before <|end|>; openai-harmony ends them at the
# text. Harmless: trailing whitespace inside the developer message, the same for every sample, and
# exactly what every transformers/vLLM user of the released model sends it.
DEVELOPER_TAIL = "\n\n"
# Special tokens openai-harmony knows and the tokenizer does not, and why that is harmless:
HARMONY_ONLY = {
    "<|reserved_200018|>": "tiktoken's second name for id 200018 (<|endofprompt|>); one id has one name in HF",
    "<|reserved_201088|>": "id 201088 lies outside gpt-oss's 201,088-row embedding: no model can emit it",
}


@pytest.fixture(scope="module")
def tok():
    return o200k.load_tokenizer()


@pytest.fixture(scope="module")
def harmony():
    import openai_harmony as oh

    before = os.environ.get("TIKTOKEN_ENCODINGS_BASE")
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(o200k.ensure_built())
    try:
        yield oh, oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)
    finally:
        os.environ.pop("TIKTOKEN_ENCODINGS_BASE") if before is None else os.environ.update(TIKTOKEN_ENCODINGS_BASE=before)


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


# --- the tokenizer --------------------------------------------------------------------------------

@needs_data
def test_dataset_texts_encode_to_the_same_ids(tok, harmony):
    _, enc = harmony
    texts = [s.text for split in ("test", "val") for s in load_split(SHARED_DATA, split)]
    ours = tok(texts, add_special_tokens=False)["input_ids"]
    differ = [t for t, got in zip(texts, ours) if got != enc.encode(t, allowed_special=set())]
    assert len(texts) > 1000 and not differ, differ[:3]


UNICODE = [
    "naïve café déjà vu — “quotes” and ‘single’", "日本語のテキスト、中文文本。한국어 텍스트", "مرحبا بالعالم שלום עולם",
    "emoji 😀👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 flags 🇲🇽🇺🇸", "e\u0301 combining, ﬁ ligature, Å vs Å, \u200bzero width\u200d",
    "I'M HERE, he'S can't WE'LL they'd You'Re", "12345 1,000,000 3.14159 0x1F 2025-08-05T12:00",
    "  leading   spaces\n\n\ttabs\r\nCRLF\r\n\n  ", "a/b/c\n/x ///// \\\\ ```json\n{}\n```", "@user #hashtag http://t.co/x?a=1&b=2",
    "x" * 300 + " " + "ab" * 150, "ᚠᛇᚻ Ελληνικά Кириллица देवनागरी ภาษาไทย", "\x00\x07\x1b[31m control", "",
]


@pytest.mark.parametrize("text", UNICODE, ids=range(len(UNICODE)))
def test_unicode_encodes_to_the_same_ids_and_round_trips(tok, harmony, text):
    _, enc = harmony
    got = ids(tok, text)
    assert got == enc.encode(text, allowed_special=set())
    assert tok.decode(got) == text


def test_every_special_token_has_openai_harmonys_id(tok, harmony):
    _, enc = harmony
    specials = enc.special_tokens_set
    assert set(HARMONY_ONLY) <= specials and len(specials) == 1091
    for name in sorted(specials - set(HARMONY_ONLY)):
        assert ids(tok, name) == enc.encode(name, allowed_special="all"), name
    for name in HARMONY_ONLY:  # plain text to the tokenizer
        assert len(ids(tok, name)) > 1
    assert sorted(enc.stop_tokens()) == sorted(tok.convert_tokens_to_ids(["<|return|>", "<|end|>", "<|call|>"]))


def conversation(oh, system_prompt: str, turns: list[tuple[str, str]], effort: str, date: str):
    """openai-harmony's Conversation for hsd's message shapes: system header, developer
    instructions, then user and final-channel assistant turns."""
    system = (oh.SystemContent.new().with_reasoning_effort(oh.ReasoningEffort[effort.upper()])
              .with_conversation_start_date(date))
    msgs = [oh.Message.from_role_and_content(oh.Role.SYSTEM, system),
            oh.Message.from_role_and_content(oh.Role.DEVELOPER, oh.DeveloperContent.new().with_instructions(system_prompt))]
    for role, text in turns:
        msg = oh.Message.from_role_and_content(oh.Role(role), text)
        msgs.append(msg.with_channel("final") if role == "assistant" else msg)
    return oh.Conversation.from_messages(msgs)


def test_a_rendered_harmony_conversation_encodes_to_the_same_ids(tok, harmony):
    oh, enc = harmony
    convo = conversation(oh, "Classify. ¿Odio? 😀", [("user", "Text: hi <3"), ("assistant", '{"classification": "normal"}'),
                                                    ("user", "Text: ünïcode\n\nbye")], "high", "2026-01-31")
    rendered = enc.render_conversation_for_completion(convo, oh.Role.ASSISTANT)
    text = enc.decode_utf8(rendered)
    assert ids(tok, text) == rendered and tok.decode(rendered) == text


# --- hsd's prompts ---------------------------------------------------------------------------------

def as_turns(messages: list[dict]) -> tuple[str, list[tuple[str, str]]]:
    assert messages[0]["role"] == "system"
    return messages[0]["content"], [(m["role"], m["content"]) for m in messages[1:]]


@needs_data
@pytest.mark.parametrize("template,effort,date", [("rich", "low", "2025-08-05"), ("rich", "high", "2026-01-31"),
                                                  ("simple", "medium", "2025-08-05"), ("simple", "low", "2024-12-24")])
def test_hsds_prompts_are_what_openai_harmony_renders(tok, harmony, template, effort, date):
    oh, enc = harmony
    cfg = load_config(None, [f"data.dir={SHARED_DATA}", f"prompt.template={template}",
                             f"prompt.reasoning_effort={effort}", f"prompt.date={date}"])
    samples = load_split(SHARED_DATA, "test")[:: 97]
    prompter = Prompter.from_config(cfg, tok, {s.id for s in samples})
    for sample in samples:
        ours = ids(tok, prompter.render(sample))
        system_prompt, turns = as_turns(prompter.messages(sample))
        with_tail = conversation(oh, system_prompt + DEVELOPER_TAIL, turns, effort, date)
        assert ours == enc.render_conversation_for_completion(with_tail, oh.Role.ASSISTANT)
        # ...and without it, that tail is the only difference
        plain = enc.render_conversation_for_completion(conversation(oh, system_prompt, turns, effort, date),
                                                       oh.Role.ASSISTANT)
        assert ours != plain
        assert tok.decode(ours) == enc.decode_utf8(plain).replace(
            system_prompt + "<|end|>", system_prompt + DEVELOPER_TAIL + "<|end|>", 1)


def test_training_conversations_are_what_openai_harmony_renders_for_training(tok, harmony):
    oh, enc = harmony
    system_prompt = "Classify the post."
    turns = [("user", "Text: a"), ("assistant", '{"classification": "hate", "rationale": "slur"}')]
    text = tok.apply_chat_template([{"role": "system", "content": system_prompt},
                                    *({"role": r, "content": c} for r, c in turns)],
                                   tokenize=False, add_generation_prompt=False, reasoning_effort="low",
                                   current_date="2025-08-05")
    want = enc.render_conversation_for_training(
        conversation(oh, system_prompt + DEVELOPER_TAIL, turns, "low", "2025-08-05"))
    assert ids(tok, text) == want and tok.decode(want).endswith("<|return|>")


# --- hsd's parser ----------------------------------------------------------------------------------

REASONING = [
    "We need to classify. The post insults a group.",
    'The user wants JSON. Maybe {"classification": "hate"}? No: it is a quote. final answer soon.',
    "Policy says hate = attack on protected group.\nHere: none. So normal.",
    "Hmm… «assistantfinal» is just text; 日本語 😀 also.",
    "",
]
RATIONALES = ["It attacks a protected group.", 'Says "they" but no target; benign.', "Ünïcode — fine 😀",
              "Line one.\nLine two with {braces} and [brackets].", ""]


def completions(oh, enc, n: int = 24):
    """Well-formed harmony completions (what follows the prompt's <|start|>assistant), rendered by
    openai-harmony itself: optional analysis and commentary messages, then a final answer."""
    rng = random.Random(0)
    for i in range(n):
        label = rng.choice(["hate", "normal"])
        answer = json.dumps({"classification": label, "rationale": rng.choice(RATIONALES)}, ensure_ascii=i % 2 == 0)
        msgs = [oh.Message.from_role_and_content(oh.Role.ASSISTANT, rng.choice(REASONING)).with_channel("analysis")
                for _ in range(i % 3)]
        if i % 4 == 3:
            msgs.append(oh.Message.from_role_and_content(oh.Role.ASSISTANT, "Checking policy.").with_channel("commentary"))
        msgs.append(oh.Message.from_role_and_content(oh.Role.ASSISTANT, answer).with_channel("final"))
        tokens = [t for m in msgs for t in enc.render(m)]
        assert enc.decode_utf8(tokens[:2]) == "<|start|>assistant" and enc.decode_utf8(tokens[-1:]) == "<|end|>"
        yield label, tokens[2:-1] + [enc.encode("<|return|>", allowed_special="all")[0]]


def test_hsds_parser_reads_the_final_answer_openai_harmony_reads(tok, harmony):
    oh, enc = harmony
    seen = set()
    for label, tokens in completions(oh, enc):
        messages = enc.parse_messages_from_completion_tokens(tokens, oh.Role.ASSISTANT)
        final = [m for m in messages if m.channel == "final"][-1]
        theirs = json.loads(final.content[0].text)
        kept = parse_response(tok.decode(tokens, skip_special_tokens=False))
        stripped = parse_response(tok.decode(tokens, skip_special_tokens=True))
        assert theirs["classification"] == label == kept.label == stripped.label
        assert kept.status == "ok_final_channel"
        # Stripped of its special tokens, an answer with no message before it reads "final{…}": the
        # same text a fine-tuned model writes when it breaks its frame, so hsd calls it unframed.
        only_final = len(messages) == 1
        assert stripped.status == ("ok_unframed" if only_final else "ok_stripped_final"), (len(messages), stripped)
        assert (kept.rationale or "") == theirs["rationale"] == (stripped.rationale or "")
        seen.add((label, len(messages)))
    assert {n for _, n in seen} == {1, 2, 3, 4} and {lab for lab, _ in seen} == {"hate", "normal"}
