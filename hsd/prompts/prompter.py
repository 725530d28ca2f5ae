"""Sample -> chat messages -> prompt text, through the tokenizer's own chat template.

The gpt-oss template writes ``Current date: <today>`` (``strftime_now``) into the system
message and offers no variable to set it, so the rendered text is pinned afterwards: the
first ``Current date: YYYY-MM-DD`` *before the first message's content* (never in a
sample's text) becomes ``prompt.date``. Without that, prompts and their hashes change at
midnight and a resumed run would disagree with its own first half.

Few-shot examples go in as earlier user/assistant turns: the template renders an earlier
assistant turn as a final-channel message, the exact form the model is asked to answer in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from hsd.data import load_split, resolve_data_dir
from hsd.errors import TemplateError
from hsd.prompt_files import prompt_hash  # noqa: F401  (re-exported: one hash, kept with the stored prompts)
from hsd.prompts.few_shot import GROUP_NAMES, select_examples, texts_outside_train
from hsd.prompts.template import GenerationParams, Template, load_template, placeholder_values
from hsd.records import Sample

GENERATION_PROMPT_END = "<|start|>assistant"  # what the harmony template's generation prompt ends with
SCORE_SUFFIX = '<|channel|>final<|message|>{"classification": "'
_DATE_RE = re.compile(r"Current date: \d{4}-\d{2}-\d{2}")
_PIN_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def answer_json(label: str, rationale: str) -> str:
    """The final-answer form the prompts ask for (and few-shot examples / training targets use)."""
    return json.dumps({"classification": label, "rationale": rationale}, ensure_ascii=False)


def pin_date(text: str, date: str, before: int) -> str:
    """Replace the first ``Current date: ...`` occurring before offset ``before``."""
    match = _DATE_RE.search(text, 0, before if before >= 0 else len(text))
    if match is None:
        return text
    return text[: match.start()] + f"Current date: {date}" + text[match.end():]


def resolve_generation(params: GenerationParams, inference: Any) -> GenerationParams:
    """The template's parameters, each overridden by ``inference.<key>`` when that is not None."""
    overrides = {
        "max_new_tokens": inference.max_new_tokens,
        "temperature": inference.temperature,
        "top_p": inference.top_p,
    }
    return replace(params, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Prompter:
    template: Template
    tokenizer: Any  # a transformers tokenizer with a chat template; None for messages() only
    examples: tuple[Sample, ...]
    generation: GenerationParams
    reasoning_effort: str
    date: str

    @property
    def strategy(self) -> str:
        return self.template.name

    @classmethod
    def from_config(cls, cfg: Any, tokenizer: Any, evaluated_ids: set[str]) -> "Prompter":
        """Template from ``cfg.prompt``; few-shot examples from the train split of ``cfg.data.dir``,
        never one of ``evaluated_ids``; generation parameters from the template and ``cfg.inference``."""
        template = load_template(cfg.prompt.template, cfg.prompt.strategy)
        if not _PIN_RE.match(cfg.prompt.date):
            raise TemplateError(f"prompt.date must be YYYY-MM-DD, got {cfg.prompt.date!r}")
        examples: tuple[Sample, ...] = ()
        if template.few_shot_rationale is not None and cfg.prompt.few_shot_per_group > 0:
            data_dir = resolve_data_dir(cfg.data.dir)
            train = load_split(data_dir, "train", empty_text=cfg.data.empty_text)
            banned = texts_outside_train(data_dir)
            examples = tuple(select_examples(train, cfg.prompt.few_shot_per_group, cfg.prompt.few_shot_seed,
                                             set(evaluated_ids), banned))
        return cls(template, tokenizer, examples, resolve_generation(template.parameters, cfg.inference),
                   cfg.prompt.reasoning_effort, cfg.prompt.date)

    def example_answer(self, example: Sample) -> str:
        rationale = self.template.few_shot_rationale[example.label]
        return answer_json(example.label, rationale.format(group=GROUP_NAMES[example.target_group]))

    def messages(self, sample: Sample) -> list[dict[str, str]]:
        """System instructions, the few-shot turns, then the sample as the last user turn."""
        msgs = [{"role": "system", "content": self.template.system_prompt}]
        for ex in self.examples:
            msgs.append({"role": "user", "content": self.template.user_message(**placeholder_values(ex))})
            msgs.append({"role": "assistant", "content": self.example_answer(ex)})
        msgs.append({"role": "user", "content": self.template.user_message(**placeholder_values(sample))})
        return msgs

    def render(self, sample: Sample) -> str:
        """The full prompt text, generation prompt included, with the date pinned."""
        if self.tokenizer is None:
            raise TemplateError("render() needs a tokenizer: build the Prompter with one")
        msgs = self.messages(sample)
        try:
            text = self.tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=True, reasoning_effort=self.reasoning_effort,
            )
        except ValueError as exc:  # transformers: no chat template on this tokenizer
            raise TemplateError(f"cannot render the prompt with this tokenizer: {exc}") from None
        return pin_date(text, self.date, text.find(msgs[0]["content"]))

    def render_score_prefix(self, sample: Sample) -> str:
        """The prompt plus the final-channel header and the opening of the JSON answer, so the
        next token is the label word (score mode)."""
        text = self.render(sample)
        if not text.endswith(GENERATION_PROMPT_END):
            raise TemplateError(
                f"score mode needs a harmony chat template whose generation prompt ends with "
                f"{GENERATION_PROMPT_END!r}; this tokenizer's ends with {text[-40:]!r}"
            )
        return text + SCORE_SUFFIX
