"""The generate rules every backend shares (hsd.inference.generation), on the harmony tokenizer."""

from __future__ import annotations

import pytest

from hsd.inference import generation
from hsd.inference.base import GenerationSettings
from hsd.models.fullsize import harmony_tokenizer


@pytest.fixture(scope="module")
def tok():
    return harmony_tokenizer()


def test_stop_ids_are_looked_up_by_name(tok):
    ids = generation.stop_ids(tok)
    assert [tok.convert_ids_to_tokens(i) for i in ids] == ["<|return|>", "<|call|>"]


def test_output_is_cut_after_the_first_stop_with_markers_kept_and_the_reason(tok):
    stops = generation.stop_ids(tok)
    answer = '<|channel|>final<|message|>{"classification": "hate"}<|return|>'
    ids = tok(answer, add_special_tokens=False).input_ids
    out = generation.to_output(tok, ids + [tok.pad_token_id] * 3, 11, stops)
    assert out.text == answer and out.new_tokens == len(ids) and out.prompt_tokens == 11
    assert out.stop_reason == "stop"
    call = tok.convert_tokens_to_ids("<|call|>")
    assert generation.to_output(tok, [ids[0], call, ids[1]], 3, stops).text.endswith("<|call|>")
    cut = generation.to_output(tok, ids[:4], 11, stops)  # the budget ran out before any stop token
    assert cut.stop_reason == "length" and cut.new_tokens == 4


@pytest.mark.parametrize("settings, expected", [
    (GenerationSettings(8, 0.0, 1.0), {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}),
    (GenerationSettings(8, 0.7, 0.9, min_new_tokens=8),
     {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "min_new_tokens": 8}),
])
def test_generate_kwargs(settings, expected, tok):
    kwargs = generation.generate_kwargs(settings, [5, 6], 0, synced_gpus=True)
    assert kwargs["max_new_tokens"] == 8 and kwargs["eos_token_id"] == [5, 6] and kwargs["synced_gpus"]
    assert {k: kwargs[k] for k in expected} == expected
    assert "synced_gpus" not in generation.generate_kwargs(settings, [5], 0)
