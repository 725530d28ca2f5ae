"""Generate mode's P(hate) at the answer's label token (hsd.inference.label_scores), on gpt-oss's tokenizer."""

from __future__ import annotations

import math

import pytest

from hsd.config import from_dict
from hsd.inference.base import Output
from hsd.inference.label_scores import LabelIds, label_score
from hsd.inference.modes import GenerateMode
from hsd.models.loader import load_tokenizer

FINAL = ('<|channel|>analysis<|message|>We think classification: hate here, maybe.<|end|><|start|>assistant'
         '<|channel|>final<|message|>{"classification": "normal", "rationale": "no slur"}<|return|>')


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(from_dict({"model": {"name_or_path": str(tiny_model_dir)}}).model)


@pytest.fixture(scope="module")
def labels(tok):
    return LabelIds.from_tokenizer(tok)


def _logits(ids, labels, at_step=None, hate=2.0, normal=0.5):
    """Every step 0, except the label columns at ``at_step`` (all spellings get the same values)."""
    k = len(labels.hate)
    rows = [[0.0] * (2 * k) for _ in ids]
    if at_step is not None:
        rows[at_step] = [hate] * k + [normal] * k
    return rows


def test_label_words_are_whole_first_tokens(tok, labels):
    assert labels is not None and len(labels.hate) == len(labels.normal) >= 2
    for h, n in zip(labels.hate, labels.normal):
        assert tok.decode([h]).strip(' "').lower() == "hate" and tok.decode([n]).strip(' "').lower() == "normal"


@pytest.mark.parametrize("text, label", [
    (FINAL, "normal"),  # the final answer's label, not the one in the reasoning
    ("<|channel|>final<|message|>hate<|return|>", "hate"),  # a bare label answer
    ("classification: normal\nRationale: calm", "normal"),
    ('{"label" = "hate"}', "hate"),
])
def test_the_label_step_is_found_and_scored(tok, labels, text, label):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    step = max(i for i, t in enumerate(ids) if t in labels.ids)
    assert tok.decode([ids[step]]).strip(' "').lower() == label
    p, named = label_score(tok, ids, _logits(ids, labels, step, hate=2.0, normal=0.5), labels)
    assert named == label and p == pytest.approx(math.exp(2.0) / (math.exp(2.0) + math.exp(0.5)), abs=1e-12)


def test_no_label_step_or_no_logits_gives_no_score(tok, labels):
    ids = tok("I hate rainy mornings, normal people do too", add_special_tokens=False)["input_ids"]
    assert label_score(tok, ids, _logits(ids, labels), labels) == (None, None)  # no key precedes the words
    final = tok(FINAL, add_special_tokens=False)["input_ids"]
    assert label_score(tok, final, None, labels) == (None, None)  # a backend that records nothing


def test_generate_mode_keeps_the_score_only_for_the_label_it_read():
    mode = GenerateMode(None)
    ok = Output(text=FINAL, prompt_tokens=1, new_tokens=1, p_hate=0.2, stop_reason="stop", label_token="normal")
    assert mode.judge(ok).p_hate == 0.2 and mode.judge(ok).predicted_label == "normal"
    other = Output(text=FINAL, prompt_tokens=1, new_tokens=1, p_hate=0.9, stop_reason="stop", label_token="hate")
    assert mode.judge(other).p_hate is None
    cut = Output(text="<|channel|>analysis<|message|>classification: hate", prompt_tokens=1, new_tokens=1,
                 p_hate=0.9, stop_reason="length", label_token="hate")
    assert mode.judge(cut).predicted_label == "unknown" and mode.judge(cut).p_hate is None
