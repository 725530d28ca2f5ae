"""Prompts: YAML templates (built-in ``rich`` and ``simple``), the legacy JSON reader,
few-shot selection and rendering through the tokenizer's chat template.

``Prompter.from_config(cfg, tokenizer, evaluated_ids)`` is the entry point; see prompter.py.
"""

from hsd.prompts.few_shot import GROUP_NAMES, check_disjoint, select_examples
from hsd.prompts.prompter import (
    SCORE_SUFFIX,
    Prompter,
    answer_json,
    pin_date,
    prompt_hash,
    resolve_generation,
)
from hsd.prompts.template import (
    GenerationParams,
    Template,
    builtin_names,
    check_placeholders,
    load_legacy_json,
    load_template,
    load_yaml_template,
    template_from_dict,
)

__all__ = [
    "GROUP_NAMES",
    "SCORE_SUFFIX",
    "GenerationParams",
    "Prompter",
    "Template",
    "answer_json",
    "builtin_names",
    "check_disjoint",
    "check_placeholders",
    "load_legacy_json",
    "load_template",
    "load_yaml_template",
    "pin_date",
    "prompt_hash",
    "resolve_generation",
    "select_examples",
    "template_from_dict",
]
