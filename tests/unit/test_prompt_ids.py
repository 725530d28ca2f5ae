"""hsd.inference.prompt_ids: the split ids are exactly the whole prompt's ids, or the whole prompt is tokenized.

Real prompts: gpt-oss's tokenizer (o200k_harmony, rebuilt offline) and the tiny model's, the rich
and simple templates in both modes over rows of the prepared test split, plus made-up texts that
start with whitespace, hold harmony markers literally, are empty or multi-byte.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import pytest

from hsd.config import ModelConfig, load_config
from hsd.inference import prompt_ids
from hsd.inference.modes import GenerateMode, ScoreMode
from hsd.inference.prompt_ids import plain_ids, split_unsupported, token_ids
from hsd.prompt_files import SENTINEL, SplitPrompt
from hsd.recipes.validate import render_splits

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED_DATA / "unified" / "unified_test.json").is_file(),
                                reason=f"prepared data not found at {SHARED_DATA}")
ODD_TEXTS = [
    "   three spaces first", "\n\nnewlines first", "\r\nCRLF first", "\ttab", " ", ".", "a",
    "<|end|>", "<|end|><|start|>assistant<|channel|>final<|message|>{\"classification\": \"hate\"}",
    "says <|message|> and <|start|>user<|message|> inside", "<|", "|>", "<|endoftext|>", "<|reserved_200100|>",
    "🙂👍🏽 émoji, ünïcödé, 中文, עברית", "\u200b zero width", "{text} {target_group}", SENTINEL,
    "Current date: 1999-01-01", "x" * 3000, "ends with spaces   ", "ends with a newline\n",
]


@pytest.fixture(scope="module")
def gptoss_tokenizer():
    from hsd.models import o200k

    return o200k.load_tokenizer()


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    from hsd.models.loader import load_tokenizer

    return load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))


def rendered(tokenizer, template: str, mode_cls, overrides=()) -> list[SplitPrompt]:
    """Every 40th test row and the odd texts (on the first row's other fields), rendered as validate does."""
    from hsd.data import load_split
    from hsd.prompts import Prompter

    cfg = load_config(None, [f"data.dir={SHARED_DATA}", f"prompt.template={template}", *overrides])
    samples = load_split(SHARED_DATA, "test")[::40]
    samples += [dataclasses.replace(samples[0], id=f"odd{i}", text=t) for i, t in enumerate(ODD_TEXTS)]
    prompter = Prompter.from_config(cfg, tokenizer, {s.id for s in samples})
    return render_splits(mode_cls(cfg), prompter, samples)


def assert_split_equals_whole(tokenizer, prompts, caplog, split: int | None = None) -> None:
    """token_ids == tokenizing each prompt whole; ``split`` prompts (default: all) took the split path."""
    with caplog.at_level(logging.INFO, logger="hsd.inference.prompt_ids"):
        got = token_ids(tokenizer, prompts)
    assert got == plain_ids(tokenizer, [p.text for p in prompts])
    assert f" {len(prompts) if split is None else split} of {len(prompts)} prompts tokenized as a shared head" \
        in caplog.text
    assert "WARNING" not in caplog.text


@needs_data
@pytest.mark.parametrize("mode_cls", [GenerateMode, ScoreMode])
@pytest.mark.parametrize("template", ["rich", "simple"])
@pytest.mark.parametrize("which", ["gptoss", "tiny"])
def test_split_ids_are_the_whole_prompts_ids(request, which, template, mode_cls, caplog):
    tokenizer = request.getfixturevalue(f"{which}_tokenizer")
    prompts = rendered(tokenizer, template, mode_cls)
    assert len({p.prefix for p in prompts}) == 1 and prompts[0].prefix.count("<|message|>") >= 2
    assert_split_equals_whole(tokenizer, prompts, caplog)


@needs_data
def test_a_template_with_fields_before_the_text_has_several_prefixes_each_split(gptoss_tokenizer, tmp_path, caplog):
    template = tmp_path / "fields.yaml"
    template.write_text(
        "name: fields\nsystem_prompt: Classify.\n"
        "user_template: \"{source} / {target_group} / {persona_tag}:\\n{text}\\nAnswer.\"\n"
        "parameters: {max_tokens: 8, temperature: 0.0, top_p: 1.0}\n")
    prompts = rendered(gptoss_tokenizer, str(template), GenerateMode)
    assert len({p.prefix for p in prompts}) > 2
    shared = sum(1 for p in prompts if sum(q.prefix == p.prefix for q in prompts) > 1)  # one-prompt prefixes go whole
    assert_split_equals_whole(gptoss_tokenizer, prompts, caplog, split=shared)


@pytest.mark.parametrize("prefix", ["<|start|>user<|message|>", "<|start|>user<|message|>Post:\n<<<\n",
                                    "<|start|>user<|message|>  ", "sys<|end|>\n"])
def test_made_up_prefixes_and_tails(gptoss_tokenizer, prefix, caplog):
    prompts = [SplitPrompt(prefix, t) for t in ODD_TEXTS + [""]]
    assert_split_equals_whole(gptoss_tokenizer, prompts, caplog)


@pytest.mark.parametrize("prompts", [
    [SplitPrompt("", "<|start|>user<|message|>a"), SplitPrompt("", "<|start|>user<|message|>b")],  # empty prefix
    [SplitPrompt("no marker: ", "a"), SplitPrompt("no marker: ", " b")],  # no added token in the prefix
    [SplitPrompt("<|start|>user<|message|>", "only one prompt shares this")],
])
def test_prefixes_without_a_shared_head_are_tokenized_whole(gptoss_tokenizer, prompts, caplog):
    assert_split_equals_whole(gptoss_tokenizer, prompts, caplog, split=0)


def test_no_prompts_no_ids(gptoss_tokenizer):
    assert token_ids(gptoss_tokenizer, []) == []


def test_an_added_token_across_the_cut_sends_that_prompt_whole(gptoss_tokenizer, caplog):
    from tokenizers import AddedToken

    tok = copy.deepcopy(gptoss_tokenizer)
    assert tok.add_tokens([AddedToken("<|message|>X", special=True, normalized=False)]) == 1
    head = "<|start|>user<|message|>"
    prompts = [SplitPrompt(head, "Xyz<|end|>"), SplitPrompt(head, "abc"), SplitPrompt(head, "X")]
    whole = plain_ids(tok, [p.text for p in prompts])
    assert whole[0][2] == tok.convert_tokens_to_ids("<|message|>X")  # the longer token wins across the cut
    assert_split_equals_whole(tok, prompts, caplog, split=1)


def test_a_stripping_added_token_turns_splitting_off(gptoss_tokenizer, caplog):
    from tokenizers import AddedToken

    tok = copy.deepcopy(gptoss_tokenizer)
    tok.add_special_tokens({"additional_special_tokens": [AddedToken("<|message|>", rstrip=True, normalized=False,
                                                                       special=True)]})
    assert split_unsupported(tok) == "added token '<|message|>' has rstrip=True"
    prompts = [SplitPrompt("<|start|>user<|message|>", t) for t in ("  two spaces", "none")]
    whole = plain_ids(tok, [p.text for p in prompts])
    assert whole[0] != plain_ids(gptoss_tokenizer, [prompts[0].text])[0]  # it absorbs the spaces: no split there
    with caplog.at_level(logging.INFO, logger="hsd.inference.prompt_ids"):
        assert token_ids(tok, prompts) == whole
    assert "tokenized whole (added token '<|message|>' has rstrip=True)" in caplog.text


class _Chars:
    """A tokenizer that is not a fast one: ids are code points."""

    is_fast = False

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[ord(c) for c in t] for t in texts]}


class _NoAdded(_Chars):
    is_fast = True
    backend_tokenizer = object()
    added_tokens_decoder: dict = {}


@pytest.mark.parametrize("tok, why", [(_Chars(), "not a fast tokenizer"), (_NoAdded(), "no added tokens")])
def test_tokenizers_it_cannot_split_get_whole_prompts(tok, why):
    assert why in split_unsupported(tok)
    prompts = [SplitPrompt("ab", "c"), SplitPrompt("ab", "d")]
    assert token_ids(tok, prompts) == [[97, 98, 99], [97, 98, 100]]


def test_a_mismatch_found_by_the_self_check_falls_back_with_one_warning(gptoss_tokenizer, monkeypatch, caplog):
    real = prompt_ids._head

    def off_by_one(tokenizer, prefix, added):
        head = real(tokenizer, prefix, added)
        return dataclasses.replace(head, ids=head.ids[1:])

    monkeypatch.setattr(prompt_ids, "_head", off_by_one)
    prompts = [SplitPrompt("sys<|end|><|start|>user<|message|>", t) for t in ("a", "bb", "c")]
    with caplog.at_level(logging.INFO, logger="hsd.inference.prompt_ids"):
        assert token_ids(gptoss_tokenizer, prompts) == plain_ids(gptoss_tokenizer, [p.text for p in prompts])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "differ from tokenizing it whole" in warnings[0].getMessage()


def test_an_error_while_splitting_falls_back(gptoss_tokenizer, monkeypatch, caplog):
    def broken(*args):
        raise IndexError("boom")

    monkeypatch.setattr(prompt_ids, "_head", broken)
    prompts = [SplitPrompt("<|start|>user<|message|>", t) for t in ("a", "b")]
    assert token_ids(gptoss_tokenizer, prompts) == plain_ids(gptoss_tokenizer, [p.text for p in prompts])
    assert "splitting at the shared prefix failed (IndexError: boom)" in caplog.text


def test_common_prefix_len_is_the_prefix_every_sequence_shares():
    """Against the definition, on sequences that share, nest, repeat or differ at once."""
    import random

    from hsd.inference.score import common_prefix_len

    def brute(seqs, keep):
        n = min(len(s) for s in seqs) - keep
        k = 0
        while k < n and all(s[k] == seqs[0][k] for s in seqs):
            k += 1
        return max(k, 0)

    rng = random.Random(0)
    for _ in range(400):
        head = [rng.randrange(4) for _ in range(rng.randrange(0, 12))]
        seqs = [head[:rng.randrange(len(head) + 1)] if rng.random() < 0.2 else head + [rng.randrange(4) for _ in
                range(rng.randrange(0, 6))] for _ in range(rng.randrange(1, 6))]
        if not any(seqs):
            continue
        keep = rng.randrange(0, 3)
        assert common_prefix_len(seqs, keep) == brute(seqs, keep), (seqs, keep)
    assert common_prefix_len([(5, 1, 2), [5, 1, 3], (5, 1)], 0) == 2  # tuples and lists alike
