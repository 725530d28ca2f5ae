"""hsd's own harmony chat template renders exactly what gpt-oss's template renders for hsd's messages.

The tiny test model carries ``hsd/models/harmony_chat_template.jinja``; prompts, few-shot turns and
training completions must be the token sequences the real model sees, so the two templates are
compared on every message shape hsd produces (the real one is read from ../shared/reference).
"""

from pathlib import Path

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

REPO = Path(__file__).resolve().parents[2]
OURS = REPO / "hsd" / "models" / "harmony_chat_template.jinja"
REAL = REPO.parent / "shared" / "reference" / "gpt-oss" / "chat_template.jinja"

CONVERSATIONS = {
    "system+user": [{"role": "system", "content": "Classify."}, {"role": "user", "content": "Text: hi"}],
    "user only": [{"role": "user", "content": "Text: hi"}],
    "few-shot": [
        {"role": "system", "content": "Policy.\nRules."},
        {"role": "user", "content": "Text: a"},
        {"role": "assistant", "content": '{"classification": "hate"}'},
        {"role": "user", "content": "Text: b"},
        {"role": "assistant", "content": '{"classification": "normal"}'},
        {"role": "user", "content": "Text: c"},
    ],
    "training answer": [
        {"role": "system", "content": "Classify."},
        {"role": "user", "content": "Text: x"},
        {"role": "assistant", "content": '{"classification": "hate", "rationale": "slur"}'},
    ],
    "training answer with reasoning": [
        {"role": "user", "content": "Text: x"},
        {"role": "assistant", "content": '{"classification": "normal"}', "thinking": "Benign."},
    ],
}


def render(path: Path, messages, add_generation_prompt: bool, **kwargs) -> str:
    rendered, _ = render_jinja_template(
        conversations=[messages], chat_template=path.read_text(), add_generation_prompt=add_generation_prompt,
        **kwargs)
    return rendered[0]


@pytest.mark.skipif(not REAL.exists(), reason="../shared/reference/gpt-oss/chat_template.jinja not present")
@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("effort", [None, "low", "high"])
def test_same_text_as_gpt_oss_template(name, effort):
    messages = CONVERSATIONS[name]
    gen = messages[-1]["role"] == "user"
    kwargs = {"reasoning_effort": effort} if effort else {}
    assert render(OURS, messages, gen, **kwargs) == render(REAL, messages, gen, **kwargs)


def test_current_date_pins_the_date():
    text = render(OURS, CONVERSATIONS["user only"], True, current_date="2025-08-05")
    assert "Current date: 2025-08-05\n" in text and text.endswith("<|start|>assistant")


def test_tool_messages_are_refused():
    with pytest.raises(Exception, match="not tool"):
        render(OURS, [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}], True)
