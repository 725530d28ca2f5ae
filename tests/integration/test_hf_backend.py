"""The hf backend on the tiny model: stop tokens, special tokens kept, seeded sampling."""

from __future__ import annotations

import pytest

from hsd.config import from_dict
from hsd.inference import get_backend
from hsd.inference.base import GenerationSettings
from hsd.models.loader import load_tokenizer

pytestmark = pytest.mark.integration

PROMPTS = ["<|start|>user<|message|>Text: the neighbours are kind<|end|><|start|>assistant",
           "<|start|>user<|message|>Text: a longer text about the new people on our street<|end|><|start|>assistant"]


def backend(model_dir, **inference):
    cfg = from_dict({"model": {"name_or_path": str(model_dir)}, "inference": {"seed": 7, **inference}})
    tok = load_tokenizer(cfg.model)
    return get_backend("hf")(cfg, "cpu", 0, tok)


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    return backend(tiny_model_dir)


def test_outputs_say_why_they_stopped(hf):  # the cut itself: tests/unit/test_generation.py
    outs = hf.generate(PROMPTS, GenerationSettings(max_new_tokens=3, temperature=0.0, top_p=1.0, min_new_tokens=3))
    assert [o.stop_reason for o in outs] == ["length", "length"]


def test_greedy_honours_min_and_max_new_tokens(hf):
    outs = hf.generate(PROMPTS, GenerationSettings(max_new_tokens=6, temperature=0.0, top_p=1.0, min_new_tokens=6))
    assert [(o.new_tokens, o.stop_reason) for o in outs] == [(6, "length"), (6, "length")]
    assert outs[0].prompt_tokens < outs[1].prompt_tokens
    again = hf.generate(PROMPTS[::-1], GenerationSettings(max_new_tokens=6, temperature=0.0, top_p=1.0))
    assert [o.text for o in again[::-1]] == [o.text for o in outs]


def test_sampling_is_seeded_and_differs_from_greedy(tiny_model_dir, hf):
    sample = GenerationSettings(max_new_tokens=12, temperature=1.0, top_p=0.95, min_new_tokens=12)
    first = [o.text for o in backend(tiny_model_dir).generate(PROMPTS, sample)]
    second = [o.text for o in backend(tiny_model_dir).generate(PROMPTS, sample)]
    greedy = [o.text for o in hf.generate(PROMPTS, GenerationSettings(12, 0.0, 1.0, 12))]
    assert first == second
    assert first != greedy
