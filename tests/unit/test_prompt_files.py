"""hsd.prompt_files: a stored prompt (run prefix file + record tail) is the exact string the model was fed.

The real path is gpt-oss's tokenizer (o200k_harmony, rebuilt offline) with gpt-oss's own chat template
from ../shared/reference (hsd's copy where that is absent), the rich template with few-shot turns from
the prepared dataset, in both decoding modes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hsd.config import load_config
from hsd.inference.modes import GenerateMode, ScoreMode
from hsd.prompt_files import (
    SENTINEL,
    PromptNotStored,
    SplitPrompt,
    full_prompt,
    prefix_path,
    prompt_hash,
    split_prompt,
    write_prefixes,
)
from hsd.recipes.validate import render_split, render_splits
from hsd.runs import RunError

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
REAL_TEMPLATE = REPO.parent / "shared" / "reference" / "gpt-oss" / "chat_template.jinja"
needs_data = pytest.mark.skipif(not (SHARED_DATA / "unified" / "unified_train.json").is_file(),
                                reason=f"prepared data not found at {SHARED_DATA}")


def test_split_at_the_sentinel():
    probe = f"<sys>rules</sys><user>Text: {SENTINEL}\nAnswer.</user>"
    split = split_prompt("<sys>rules</sys><user>Text: hello\nAnswer.</user>", probe)
    assert split == SplitPrompt("<sys>rules</sys><user>Text: ", "hello\nAnswer.</user>")
    assert split.prefix_hash == prompt_hash(split.prefix)


@pytest.mark.parametrize("probe", ["no sentinel here", f"<other>{SENTINEL}"])
def test_a_probe_that_disagrees_keeps_the_whole_prompt_in_the_tail(probe):
    assert split_prompt("<sys>x</sys>hello", probe) == SplitPrompt("", "<sys>x</sys>hello")


# ---------------------------------------------------------------- the real tokenizer and template


@pytest.fixture(scope="module")
def gptoss_tokenizer():
    from hsd.models import o200k

    tok = o200k.load_tokenizer()
    if REAL_TEMPLATE.is_file():
        tok.chat_template = REAL_TEMPLATE.read_text(encoding="utf-8")
    return tok


@needs_data
@pytest.mark.parametrize("mode_cls", [GenerateMode, ScoreMode])
@pytest.mark.parametrize("template", ["rich", "simple"])
def test_prefix_plus_tail_is_the_prompt_fed_to_the_tokenizer(gptoss_tokenizer, mode_cls, template, tmp_path):
    from hsd.data import load_split
    from hsd.prompts import Prompter

    cfg = load_config(None, [f"data.dir={SHARED_DATA}", f"prompt.template={template}"])
    samples = load_split(SHARED_DATA, "test")[::101]
    samples.append(dataclasses.replace(samples[0], id="edge", text="line\r\nbreak 🙂 {text} <|end|> Current date: 1999-01-01"))
    prompter = Prompter.from_config(cfg, gptoss_tokenizer, {s.id for s in samples})
    mode = mode_cls(cfg)
    splits = [render_split(mode, prompter, s) for s in samples]
    for sample, split in zip(samples, splits):
        fed = mode.render(prompter, sample)
        assert split.prefix + split.tail == fed  # byte for byte
        assert split.tail.startswith(sample.text)  # everything before the text is shared
        assert prompter.template.system_prompt not in split.tail
    assert len({s.prefix for s in splits}) == 1 and prompter.template.system_prompt in splits[0].prefix
    if template == "rich":
        assert prompter.examples and prompter.examples[0].text in splits[0].prefix  # few-shot turns are shared
    # ...and read back from the run directory, through the file, as the same string and the same ids
    write_prefixes(tmp_path, splits)
    assert [p.name for p in (tmp_path / "prompts").iterdir()] == [f"prefix-{splits[0].prefix_hash}.txt"]
    for sample, split in zip(samples, splits):
        fed = mode.render(prompter, sample)
        back = full_prompt(tmp_path, split.prefix_hash, split.tail, prompt_hash(fed))
        assert back.encode("utf-8") == fed.encode("utf-8")
        assert gptoss_tokenizer(back, add_special_tokens=False)["input_ids"] == \
            gptoss_tokenizer(fed, add_special_tokens=False)["input_ids"]


FIELDS_TEMPLATE = ("name: fields\nsystem_prompt: Classify.\n"
                   "user_template: \"{source} / {target_group}:\\n{text}\\nPersona {persona_tag}.\"\n"
                   "parameters: {max_tokens: 8, temperature: 0.0, top_p: 1.0}\n")


@needs_data
@pytest.mark.parametrize("mode_cls", [GenerateMode, ScoreMode])
@pytest.mark.parametrize("template", ["rich", "simple", "fields"])
def test_one_probe_per_distinct_template_fields_splits_as_one_probe_per_sample(gptoss_tokenizer, mode_cls,
                                                                               template, tmp_path, monkeypatch):
    from hsd.data import load_split
    from hsd.prompts import Prompter

    if template == "fields":  # fields before the text: one prefix per (source, group)
        (tmp_path / "fields.yaml").write_text(FIELDS_TEMPLATE)
        template = str(tmp_path / "fields.yaml")
    cfg = load_config(None, [f"data.dir={SHARED_DATA}", f"prompt.template={template}"])
    samples = load_split(SHARED_DATA, "test")[::23]
    prompter = Prompter.from_config(cfg, gptoss_tokenizer, {s.id for s in samples})
    mode = mode_cls(cfg)
    want = [render_split(mode, prompter, s) for s in samples]
    probes = []
    render = mode.render
    monkeypatch.setattr(mode, "render", lambda p, s: probes.append(s.text == SENTINEL) or render(p, s))
    assert render_splits(mode, prompter, samples) == want
    fields = {(s.target_group, s.persona_tag, s.source) for s in samples}
    assert sum(probes) == len(fields) < len(samples)
    assert len({w.prefix for w in want}) == (1 if "fields" not in template else len({f[::2] for f in fields}))


# ---------------------------------------------------------------- the files


def split_of(text: str = "<sys>rules</sys>hello") -> SplitPrompt:
    return SplitPrompt("<sys>rules</sys>", text[len("<sys>rules</sys>"):])


def test_each_prefix_is_written_once(tmp_path):
    first = write_prefixes(tmp_path, [split_of(), split_of("<sys>rules</sys>bye"), SplitPrompt("", "all tail")])
    assert sorted(p.name for p in first) == sorted(p.name for p in (tmp_path / "prompts").iterdir())
    assert len(first) == 2 and prefix_path(tmp_path, prompt_hash("")).read_bytes() == b""
    assert write_prefixes(tmp_path, [split_of()]) == []  # a resumed attempt or another rank: nothing rewritten


def test_full_prompt_errors_name_the_problem(tmp_path):
    split = split_of()
    with pytest.raises(PromptNotStored):
        full_prompt(tmp_path, None, None, prompt_hash(split.text))
    with pytest.raises(RunError, match=r"prefix-[0-9a-f]{16}\.txt is missing.*copy the run's whole prompts/"):
        full_prompt(tmp_path, split.prefix_hash, split.tail, prompt_hash(split.text))
    write_prefixes(tmp_path, [split])
    assert full_prompt(tmp_path, split.prefix_hash, split.tail, prompt_hash(split.text)) == split.text
    prefix_path(tmp_path, split.prefix_hash).write_text("<sys>RULES</sys>")
    with pytest.raises(RunError, match="not the record's prompt_hash .* changed after the run"):
        full_prompt(tmp_path, split.prefix_hash, split.tail, prompt_hash(split.text))
    prefix_path(tmp_path, split.prefix_hash).write_bytes(b"\xff")
    with pytest.raises(RunError, match="not UTF-8"):
        full_prompt(tmp_path, split.prefix_hash, split.tail, prompt_hash(split.text))

