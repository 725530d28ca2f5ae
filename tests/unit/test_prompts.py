"""hsd.prompts: templates, the legacy JSON reader, few-shot selection and chat-template rendering.

Rendering runs through a real transformers tokenizer built here (a small byte-level BPE with
the harmony special tokens and the gpt-oss chat template), so no model is needed.
"""

from __future__ import annotations

import datetime as real_datetime
import json
from pathlib import Path

import pytest
import yaml

from hsd.config import load_config
from hsd.data import TARGET_GROUPS, load_samples, load_split
from hsd.errors import DataError, TemplateError
from hsd.prompts import (
    SCORE_SUFFIX,
    GenerationParams,
    Prompter,
    builtin_names,
    check_disjoint,
    load_template,
    pin_date,
    prompt_hash,
    select_examples,
)
from hsd.prompts.few_shot import MAX_EXAMPLE_CHARS
from hsd.prompts.template import placeholder_values
from hsd.records import LABELS, Sample

REPO = Path(__file__).parents[2]
REFERENCE = REPO.parent / "shared" / "reference"
TEMPLATE_FILES = [REPO / "hsd" / "models" / "harmony_chat_template.jinja", REFERENCE / "gpt-oss" / "chat_template.jinja"]
HARMONY = ["<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>",
           "<|end|>", "<|message|>", "<|call|>"]


def balanced_rows(per_stratum: int, prefix: str) -> list[dict]:
    """Unified-schema rows, ``per_stratum`` for every (target group, label)."""
    rows = []
    for group in TARGET_GROUPS:
        for label in LABELS:
            for _ in range(per_stratum):
                i = len(rows)
                rows.append({"text": f"{prefix} text {i}", "label_binary": label, "target_group_norm": group,
                             "persona_tag": group, "source_dataset": "toxigen", "original_id": f"{prefix}{i}"})
    return rows


def write_json(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def make_data_dir(root: Path) -> Path:
    for split, n in (("train", 5), ("val", 2), ("test", 4)):
        write_json(root / "unified" / f"unified_{split}.json", balanced_rows(n, split[:2]))
    return root


def build_tokenizer(chat_template: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=HARMONY,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(['{"classification": "hate", "rationale": "normal"} Post to review'] * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|return|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = chat_template
    return fast


@pytest.fixture(scope="module")
def harmony_tokenizer():
    path = next((p for p in TEMPLATE_FILES if p.is_file()), None)
    if path is None:
        pytest.skip("no harmony chat template (hsd/models/harmony_chat_template.jinja or ../shared/reference)")
    return build_tokenizer(path.read_text(encoding="utf-8"))


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    return make_data_dir(tmp_path / "data")


def cfg_for(data_dir: Path, *overrides: str):
    return load_config(None, [f"data.dir={data_dir}", *overrides])


def sample(text: str = "they are all { not a placeholder } people", sid: str = "te0") -> Sample:
    return Sample(id=sid, text=text, label="hate", target_group="mexican", persona_tag="mexican", source="toxigen")


def write_yaml_template(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((REPO / "hsd" / "prompts" / "templates" / "simple.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


LEGACY = {
    "strategies": {
        "plain": {"name": "plain", "system_prompt": 'Answer {"classification": "hate"} style.',
                  "user_template": 'Text: "{text}"\nJSON: {{"classification": "[hate/normal]"}}',
                  "parameters": {"max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "frequency_penalty": 0.0,
                                 "response_format": "json_object"}},
        "typo": {"system_prompt": "s", "user_template": "Text: {txt}",
                 "parameters": {"max_tokens": 8, "temperature": 0.0, "top_p": 1.0}},
    }
}


# ---------------------------------------------------------------- templates


def test_builtin_templates():
    assert {"rich", "simple"} <= set(builtin_names())
    rich, simple = load_template("rich"), load_template("simple")
    assert rich.name == "rich" and rich.few_shot_rationale is not None
    assert simple.few_shot_rationale is None
    assert "{text}" not in simple.user_message("abc") and "abc" in simple.user_message("abc")
    assert '{"classification": "hate|normal"' in simple.user_message("abc")  # {{ }} unescaped once


@pytest.mark.parametrize("user_template, expected", [
    ("Classify this.", "no {text} placeholder"),
    ("Text: {txt}", r"unknown placeholder \{txt\}; did you mean \{text\}\? valid placeholders: \{text\}, "
                    r"\{target_group\}, \{persona_tag\}, \{source\}"),
    ("Text: {text} ({target_grop})", r"unknown placeholder \{target_grop\}; did you mean \{target_group\}\?"),
    ("Text: {text} {label}", r"unknown placeholder \{label\}; valid placeholders"),
    ("Text: {text} {}", "positional"),
    ("Text: {text:>10}", "format spec"),
    ("Text: {text} {", "malformed placeholder"),
])
def test_bad_placeholders_name_file_and_valid_ones(tmp_path, user_template, expected):
    path = write_yaml_template(tmp_path, user_template=user_template)
    with pytest.raises(TemplateError, match=expected) as err:
        load_template(str(path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("changes, expected", [
    ({"temprature": 0.1}, "unknown key.*temprature.*valid keys"),
    ({"parameters": {"max_tokens": 10, "temperature": 0.0}}, "lack top_p"),
    ({"parameters": {"max_tokens": 0, "temperature": 0.0, "top_p": 1.0}}, "max_tokens must be a positive"),
    ({"parameters": {"max_tokens": 5, "temperature": 0.0, "top_p": 1.0, "frequency_penalty": 0.1}}, "unknown parameter"),
    ({"few_shot": {"rationale": {"hate": "x {grp}", "normal": "y"}}}, r"unknown placeholder \{grp\}"),
    ({"name": "has space"}, "may hold only"),
])
def test_bad_yaml_templates(tmp_path, changes, expected):
    with pytest.raises(TemplateError, match=expected):
        load_template(str(write_yaml_template(tmp_path, **changes)))


def test_template_lookup_errors(tmp_path):
    with pytest.raises(TemplateError, match="built-in name .*rich.*simple"):
        load_template("richer")
    with pytest.raises(TemplateError, match="not found"):
        load_template(str(tmp_path / "missing.yaml"))
    with pytest.raises(TemplateError, match="single strategy 'simple'"):
        load_template("simple", "baseline_standard")


def test_legacy_json_strategies(tmp_path, caplog):
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(LEGACY))
    t = load_template(str(path), "plain")
    assert t.name == "plain" and t.parameters == GenerationParams(64, 0.2, 0.9)
    assert t.user_message("x") == 'Text: "x"\nJSON: {"classification": "[hate/normal]"}'
    assert t.system_prompt == 'Answer {"classification": "hate"} style.'  # literal, not a format string
    with pytest.raises(TemplateError, match="unknown strategy 'plane'; available strategies: plain, typo"):
        load_template(str(path), "plane")
    with pytest.raises(TemplateError, match="set prompt.strategy to one of: plain, typo"):
        load_template(str(path), None)
    with pytest.raises(TemplateError, match=r"strategy 'typo'.*\{txt\}.*\{text\}") as err:
        load_template(str(path), "typo")
    assert str(path) in str(err.value)
    bad = dict(LEGACY["strategies"]["plain"], parameters={"max_tokens": 9, "temperature": 0, "top_p": 1, "presence_penalty": 0.3})
    path.write_text(json.dumps({"strategies": {"p": bad}}))
    load_template(str(path), "p")
    assert "presence_penalty" in caplog.text


@pytest.mark.skipif(not (REFERENCE / "baseline_v1.json").is_file(), reason="../shared/reference not present")
def test_shipped_legacy_files_read_every_strategy():
    for name, count in (("baseline_v1.json", 6), ("combined_gptoss_v1.json", 3)):
        path = REFERENCE / name
        names = list(json.loads(path.read_text())["strategies"])
        assert len(names) == count
        for strategy in names:
            t = load_template(str(path), strategy)
            text = t.user_message("SAMPLE")
            assert "SAMPLE" in text and "{{" not in text and '{"classification"' in text
    assert load_template(str(REFERENCE / "baseline_v1.json"), "baseline_standard").parameters == GenerationParams(512, 0.1, 1.0)


def test_generation_parameters_template_then_config(data_dir):
    assert Prompter.from_config(cfg_for(data_dir, "prompt.template=simple"), None, set()).generation == \
        GenerationParams(512, 0.0, 1.0)
    cfg = cfg_for(data_dir, "prompt.template=simple", "inference.max_new_tokens=7", "inference.temperature=0.7")
    gen = Prompter.from_config(cfg, None, set()).generation
    assert gen == GenerationParams(7, 0.7, 1.0)
    assert gen.generate_kwargs() == {"max_new_tokens": 7, "do_sample": True, "temperature": 0.7, "top_p": 1.0}
    assert GenerationParams(5, 0.0, 0.9).generate_kwargs() == {"max_new_tokens": 5, "do_sample": False}


# ---------------------------------------------------------------- few-shot


def test_few_shot_per_group_and_label_from_train_only(data_dir):
    test_ids = {s.id for s in load_split(data_dir, "test")}
    prompter = Prompter.from_config(cfg_for(data_dir, "prompt.few_shot_per_group=2"), None, test_ids)
    examples = prompter.examples
    assert len(examples) == 2 * len(TARGET_GROUPS) * len(LABELS)
    assert {(e.target_group, e.label) for e in examples} == {(g, l) for g in TARGET_GROUPS for l in LABELS}
    assert all(e.id.startswith("tr") for e in examples)
    again = Prompter.from_config(cfg_for(data_dir, "prompt.few_shot_per_group=2"), None, test_ids).examples
    assert again == examples
    other_seed = Prompter.from_config(cfg_for(data_dir, "prompt.few_shot_seed=99"), None, test_ids).examples
    assert other_seed != examples
    labels_in_order = [e.label for e in examples]
    assert labels_in_order != sorted(labels_in_order)  # interleaved, not one block per label


def test_few_shot_never_uses_evaluated_ids(data_dir):
    train = load_split(data_dir, "train")
    first = select_examples(train, 2, seed=13, evaluated_ids=set())
    evaluated = {e.id for e in first}
    second = select_examples(train, 2, seed=13, evaluated_ids=evaluated)
    assert not {e.id for e in second} & evaluated
    with pytest.raises(TemplateError, match="overlap the evaluated samples"):
        check_disjoint(first, evaluated)
    with pytest.raises(DataError, match="only 3 available: lower prompt.few_shot_per_group"):
        select_examples(train, 4, seed=13, evaluated_ids={train[0].id, train[1].id})


def test_few_shot_skips_long_texts_and_texts_of_other_splits(tmp_path):
    rows = balanced_rows(3, "tr")  # the (lgbtq, hate) stratum is rows 0, 1, 2
    rows[0]["text"] = "x" * (MAX_EXAMPLE_CHARS + 1)
    train = load_samples(write_json(tmp_path / "t.json", rows))
    picked = select_examples(train, 1, seed=1, evaluated_ids=set(), banned_texts={"tr text 1"})
    assert [e.id for e in picked if (e.target_group, e.label) == ("lgbtq", "hate")] == ["tr2"]
    with pytest.raises(DataError, match="only 1 available"):
        select_examples(train, 2, seed=1, evaluated_ids=set(), banned_texts={"tr text 1"})


def test_rich_messages_structure(data_dir):
    prompter = Prompter.from_config(cfg_for(data_dir, "prompt.few_shot_per_group=1"), None, set())
    msgs = prompter.messages(sample())
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 6 + ["user"]
    assert "they are all { not a placeholder } people" in msgs[-1]["content"]
    for ex, answer in zip(prompter.examples, msgs[2:-1:2]):
        parsed = json.loads(answer["content"])
        assert parsed["classification"] == ex.label and parsed["rationale"]
        assert answer["content"].startswith('{"classification": "')


def test_simple_template_has_no_examples_and_needs_no_train(tmp_path):
    empty = tmp_path / "nodata"
    prompter = Prompter.from_config(cfg_for(empty, "prompt.template=simple"), None, set())
    assert prompter.examples == () and len(prompter.messages(sample())) == 2


# ---------------------------------------------------------------- rendering


class _OtherDay(real_datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2031, 2, 3, 23, 59, 59)


def test_render_pins_the_date_whatever_the_day(data_dir, harmony_tokenizer, monkeypatch):
    import transformers.utils.chat_template_utils as ctu

    prompter = Prompter.from_config(cfg_for(data_dir, "prompt.template=simple"), harmony_tokenizer, set())
    s = sample("Current date: 2020-01-01 is in the sample text")
    today = prompter.render(s)
    monkeypatch.setattr(ctu, "datetime", _OtherDay)
    raw = harmony_tokenizer.apply_chat_template(prompter.messages(s), tokenize=False, add_generation_prompt=True)
    assert "Current date: 2031-02-03" in raw  # the template really reads the clock
    other_day = prompter.render(s)
    assert other_day == today and prompt_hash(other_day) == prompt_hash(today)
    assert "Current date: 2025-08-05" in today and "Current date: 2020-01-01 is in the sample" in today
    later = Prompter.from_config(cfg_for(data_dir, "prompt.template=simple", "prompt.date=2026-01-01"), harmony_tokenizer, set())
    assert "Current date: 2026-01-01" in later.render(s)


def test_render_harmony_layout(data_dir, harmony_tokenizer):
    cfg = cfg_for(data_dir, "prompt.few_shot_per_group=1", "prompt.reasoning_effort=high")
    prompter = Prompter.from_config(cfg, harmony_tokenizer, set())
    text = prompter.render(sample())
    assert "Reasoning: high" in text and "<|start|>developer<|message|># Instructions" in text
    assert text.count("<|start|>assistant<|channel|>final<|message|>{\"classification\": ") == 6
    assert text.endswith("people\n>>>\n\nApply the policy and answer with the JSON object only: "
                         '{"classification": "hate" or "normal", "rationale": "..."}<|end|><|start|>assistant')
    prefix = prompter.render_score_prefix(sample())
    assert prefix == text + SCORE_SUFFIX
    assert prefix.endswith('<|start|>assistant<|channel|>final<|message|>{"classification": "')
    assert len(prompt_hash(text)) == 16 and prompt_hash(text) != prompt_hash(prefix)


def test_score_prefix_needs_a_harmony_template(data_dir):
    chatml = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    prompter = Prompter.from_config(cfg_for(data_dir, "prompt.template=simple"), build_tokenizer(chatml), set())
    assert prompter.render(sample()).endswith("<|im_start|>assistant\n")
    with pytest.raises(TemplateError, match="score mode needs a harmony chat template"):
        prompter.render_score_prefix(sample())


def test_pin_date_only_before_the_messages():
    text = "Current date: 2024-01-01\nhello Current date: 2024-02-02"
    assert pin_date(text, "2025-08-05", text.find("hello")) == "Current date: 2025-08-05\nhello Current date: 2024-02-02"
    assert pin_date(text, "2025-08-05", 3) == text


def test_bad_pinned_date(data_dir):
    with pytest.raises(TemplateError, match="YYYY-MM-DD"):
        Prompter.from_config(cfg_for(data_dir, "prompt.template=simple", "prompt.date=05/08/2025"), None, set())


def test_user_template_fills_every_sample_field_for_the_sample_and_each_example(tmp_path, data_dir):
    user = "Group: {target_group} | tag: {persona_tag} | from: {source}\nText: {text}"
    raw = yaml.safe_load((REPO / "hsd" / "prompts" / "templates" / "rich.yaml").read_text())
    path = tmp_path / "fields.yaml"
    path.write_text(yaml.safe_dump({**raw, "name": "fields", "user_template": user}))
    prompter = Prompter.from_config(cfg_for(data_dir, f"prompt.template={path}", "prompt.few_shot_per_group=1"),
                                    None, set())
    s = Sample(id="te0", text="they {are} here", label="hate", target_group="mexican", persona_tag="hispanic",
               source="hatexplain")
    msgs = prompter.messages(s)
    assert msgs[-1]["content"] == "Group: mexican | tag: hispanic | from: hatexplain\nText: they {are} here"
    for ex, turn in zip(prompter.examples, msgs[1:-1:2]):  # each example with its own fields
        assert turn["content"] == f"Group: {ex.target_group} | tag: {ex.persona_tag} | from: {ex.source}\nText: {ex.text}"
    assert {ex.target_group for ex in prompter.examples} == set(TARGET_GROUPS)


def test_a_legacy_json_strategy_may_use_the_target_group(tmp_path):
    entry = {"system_prompt": "s", "user_template": "Target group: {target_group}\nText: {text}",
             "parameters": {"max_tokens": 8, "temperature": 0.0, "top_p": 1.0}}
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"strategies": {"grouped": entry}}))
    t = load_template(str(path), "grouped")
    assert t.user_message(**placeholder_values(sample("a b"))) == "Target group: mexican\nText: a b"


def test_old_optimized_builtin_gives_the_target_group():
    t = load_template("old_optimized")
    assert t.user_message(**placeholder_values(sample("a b"))) == "Target group: mexican\nText: a b"
    assert "LABEL: hate" in t.system_prompt and "RATIONALE:" in t.system_prompt
