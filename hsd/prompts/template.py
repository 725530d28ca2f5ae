"""Prompt templates: hsd's YAML files and the old pipeline's JSON, read into one :class:`Template`.

YAML schema (see ``templates/rich.yaml``)::

    name: rich                     # the strategy name written into records and CSVs
    description: ...
    system_prompt: |               # literal text: braces need no escaping
    user_template: |               # str.format text; {text} required; {target_group}, {persona_tag},
                                   # {source} optional (USER_PLACEHOLDERS); {{ }} escape
    few_shot:                      # optional: examples from the train split
      rationale: {hate: "...{group}...", normal: "..."}
    parameters: {max_tokens: 1024, temperature: 0.0, top_p: 1.0}

Legacy JSON (``{"strategies": {name: {system_prompt, user_template, parameters}}}``) is read
with the same rules; a strategy is picked by name. Placeholders are checked when the file is
read, with ``string.Formatter().parse``, so a typo like ``{txt}`` fails before any GPU time.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from hsd import textio
from hsd.errors import TemplateError
from hsd.records import LABELS

log = logging.getLogger("hsd.prompts")

BUILTIN_DIR = Path(__file__).with_name("templates")
# A user template's placeholders: fields every dataset row has (hsd.data.schema REQUIRED_STR), under
# their record names. Never the label or the rationale: a prompt holding them gives the answer away.
USER_PLACEHOLDERS: tuple[str, ...] = ("text", "target_group", "persona_tag", "source")
REQUIRED_PLACEHOLDERS: tuple[str, ...] = ("text",)
RATIONALE_PLACEHOLDERS: tuple[str, ...] = ("group",)
TEMPLATE_KEYS = ("name", "description", "system_prompt", "user_template", "few_shot", "parameters")
PARAMETER_KEYS = ("max_tokens", "temperature", "top_p")
# Old-pipeline parameters that HF generate has no equivalent for; a non-zero value is warned about.
LEGACY_IGNORED = ("frequency_penalty", "presence_penalty", "response_format")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings; temperature 0 means greedy decoding."""

    max_new_tokens: int
    temperature: float
    top_p: float

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    def generate_kwargs(self) -> dict[str, Any]:
        """Arguments for ``model.generate``; sampling knobs only when sampling (HF warns otherwise)."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    system_prompt: str
    user_template: str
    parameters: GenerationParams
    few_shot_rationale: Optional[dict[str, str]]  # label -> rationale text; None: no examples
    source: str  # file (and strategy) it came from, for error messages

    def user_message(self, text: str, target_group: str = "", persona_tag: str = "", source: str = "") -> str:
        """The user turn for one sample (:func:`placeholder_values` gives every field)."""
        return self.user_template.format(text=text, target_group=target_group, persona_tag=persona_tag, source=source)


def placeholder_values(sample: Any) -> dict[str, str]:
    """A sample's value for each of :data:`USER_PLACEHOLDERS` (``target_group`` is the normalized
    group: lgbtq, mexican, middle_east; ``persona_tag`` the dataset's own tag; ``source`` its dataset)."""
    return {"text": sample.text, "target_group": sample.target_group, "persona_tag": sample.persona_tag,
            "source": sample.source}


def check_placeholders(fmt: str, valid: tuple[str, ...], required: tuple[str, ...], where: str) -> None:
    """Every ``{name}`` in ``fmt`` is one of ``valid`` and each ``required`` one is present."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(fmt) if name is not None]
    except ValueError as exc:
        raise TemplateError(f"{where}: malformed placeholder ({exc}); write {{{{ and }}}} for literal braces") from None
    valid_list = ", ".join("{" + v + "}" for v in valid)
    for name, spec, conv in fields:
        if name not in valid:
            shown = "{" + name + "}" if name else "{} (positional)"
            near = difflib.get_close_matches(name, valid, n=1)
            hint = f"did you mean {{{near[0]}}}? " if near else ""
            raise TemplateError(
                f"{where}: unknown placeholder {shown}; {hint}valid placeholders: {valid_list} "
                "(write {{ and }} for literal braces)"
            )
        if spec or conv:
            raise TemplateError(f"{where}: placeholder {{{name}}} must not carry a format spec or conversion")
    names = {f[0] for f in fields}
    for name in required:
        if name not in names:
            raise TemplateError(f"{where}: the template has no {{{name}}} placeholder, so the sample would never reach "
                                f"the model; valid placeholders: {valid_list}")


def _params(raw: Any, where: str, strict: bool) -> GenerationParams:
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: 'parameters' must be a mapping with {', '.join(PARAMETER_KEYS)}")
    allowed = PARAMETER_KEYS + (() if strict else LEGACY_IGNORED)
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise TemplateError(f"{where}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(PARAMETER_KEYS)}")
    missing = [k for k in PARAMETER_KEYS if k not in raw]
    if missing:
        raise TemplateError(f"{where}: parameters lack {', '.join(missing)} (needed: {', '.join(PARAMETER_KEYS)})")
    mt, temp, top_p = raw["max_tokens"], raw["temperature"], raw["top_p"]
    if isinstance(mt, bool) or not isinstance(mt, int) or mt <= 0:
        raise TemplateError(f"{where}: parameters.max_tokens must be a positive integer, got {mt!r}")
    for key, value in (("temperature", temp), ("top_p", top_p)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TemplateError(f"{where}: parameters.{key} must be a number, got {value!r}")
    if temp < 0 or not 0 < top_p <= 1:
        raise TemplateError(f"{where}: need temperature >= 0 and 0 < top_p <= 1, got {temp}, {top_p}")
    ignored = {k: raw[k] for k in LEGACY_IGNORED if k in raw and raw[k] not in (0, None, "json_object")}
    if ignored:
        log.warning("%s: parameters not supported by hsd's generation, ignored: %s", where, ignored)
    return GenerationParams(int(mt), float(temp), float(top_p))


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TemplateError(f"{where}: '{key}' must be a non-empty string")
    return value


def _few_shot(raw: Any, where: str) -> Optional[dict[str, str]]:
    if raw is None:
        return None
    rationale = raw.get("rationale") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or set(raw) != {"rationale"} or not isinstance(rationale, dict) \
            or set(rationale) != set(LABELS):
        raise TemplateError(f"{where}: 'few_shot' must be {{rationale: {{hate: TEXT, normal: TEXT}}}}")
    for label in LABELS:
        _text(rationale, label, f"{where} few_shot.rationale")
        check_placeholders(rationale[label], RATIONALE_PLACEHOLDERS, (), f"{where} few_shot.rationale.{label}")
    return dict(rationale)


def template_from_dict(raw: Any, where: str, strict: bool = True) -> Template:
    """Validate one strategy's mapping (a YAML file, or one entry of a legacy JSON file)."""
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: a template must be a mapping, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in TEMPLATE_KEYS]
    if unknown and strict:
        raise TemplateError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; valid keys: {', '.join(TEMPLATE_KEYS)}")
    name = _text(raw, "name", where)
    if not _NAME_RE.match(name):
        raise TemplateError(f"{where}: name {name!r} may hold only letters, digits, '.', '_' and '-'")
    user = _text(raw, "user_template", where)
    check_placeholders(user, USER_PLACEHOLDERS, REQUIRED_PLACEHOLDERS, f"{where} user_template")
    return Template(
        name=name,
        description=str(raw.get("description") or ""),
        system_prompt=_text(raw, "system_prompt", where),
        user_template=user,
        parameters=_params(raw.get("parameters"), where, strict),
        few_shot_rationale=_few_shot(raw.get("few_shot"), where),
        source=where,
    )


def load_yaml_template(path: Path, strategy: Optional[str] = None) -> Template:
    text = textio.read_text(path, error=TemplateError)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {exc}") from None
    template = template_from_dict(raw, str(path))
    if strategy is not None and strategy != template.name:
        raise TemplateError(f"{path}: holds the single strategy {template.name!r}, not {strategy!r}; "
                            "prompt.strategy selects a strategy only inside a legacy JSON file")
    return template


def load_legacy_json(path: Path, strategy: Optional[str]) -> Template:
    """One strategy of an old-pipeline template file, picked by name."""
    text = textio.read_text(path, error=TemplateError)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    strategies = raw.get("strategies") if isinstance(raw, dict) else None
    if not isinstance(strategies, dict) or not strategies:
        raise TemplateError(f"{path}: expected {{\"strategies\": {{NAME: {{system_prompt, user_template, parameters}}}}}}")
    names = ", ".join(strategies)
    if strategy is None:
        raise TemplateError(f"{path}: set prompt.strategy to one of: {names}")
    if strategy not in strategies:
        raise TemplateError(f"{path}: unknown strategy {strategy!r}; available strategies: {names}")
    entry = strategies[strategy]
    if isinstance(entry, dict):
        entry = {**entry, "name": strategy}  # the key the user selected is the strategy's name
    return template_from_dict(entry, f"{path} strategy {strategy!r}", strict=False)


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_template(template: str, strategy: Optional[str] = None) -> Template:
    """A built-in name (``rich``, ``simple``), a ``.yaml``/``.yml`` file or a legacy ``.json`` file."""
    if template in builtin_names():
        return load_yaml_template(BUILTIN_DIR / f"{template}.yaml", strategy)
    path = Path(template)
    readers = {".yaml": load_yaml_template, ".yml": load_yaml_template, ".json": load_legacy_json}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise TemplateError(f"unknown template {template!r}: use a built-in name ({', '.join(builtin_names())}), "
                            "a .yaml template file or a legacy .json template file")
    if not path.is_file():
        raise TemplateError(f"template file not found: {path}")
    return reader(path, strategy)
