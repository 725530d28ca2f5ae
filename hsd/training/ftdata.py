"""Fine-tuning data: ``hsd ftdata --config F [--out DIR] [overrides]``.

From the train split, minus every evaluated sample (the config's split or canned subset, and
the val and test files — the canned subsets are drawn from train), a stratified hold-out
(``train.holdout_fraction``, label x target group, ``train.seed``) for the eval loss, and
the rest (``train.max_train_samples`` of it, stratified) for training. Both are written in
every chat format of ``FORMATS``, each as JSON lines ``{id, label, target_group, messages, prompt, completion}``:

* ``simple/`` — the prompt of ``pipeline.finetuned_template`` (built-in ``simple``: short
  instructions, no examples), answer ``{"classification": "hate"}``. Post-FT validation uses
  the same template, so the adapter sees at inference exactly what it was trained on.
* ``optimized/`` — the prompt of ``pipeline.baseline_template`` (built-in ``rich``: policy +
  few-shot examples), answer with the dataset's ``rationale_text`` where it has one
  (HateXplain's highlighted words, verbatim), else the label alone.
* ``old_optimized/`` — the old pipeline's optimized format: the built-in ``old_optimized`` prompt
  (``Target group: <group>`` then ``Text: <text>``), answer ``LABEL: <label> RATIONALE: <rationale>``,
  the rationale being the dataset's ``rationale_text`` where it has one, else ``not annotated``.
  Validate such an adapter with ``prompt.template=old_optimized``.

``prompt`` is the text exactly as rendered at inference (date pinned, generation prompt
``<|start|>assistant`` at the end); ``completion`` is what the tokenizer's chat template
appends for a final assistant turn: ``<|channel|>final<|message|>{json}<|return|>`` for
gpt-oss — the form the parser reads. No analysis channel: a fabricated reasoning text would
teach the model to invent one, and an empty one only adds tokens; the model learns to answer
right after the generation prompt. The same config always gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from hsd.config import Config, ConfigError, dump_config, replace, to_dict
from hsd.data import load_split, resolve_data_dir, select_samples, stratified_sample
from hsd.errors import TemplateError, TrainingDataError
from hsd.records import Sample
from hsd.runs import RunError, Status, atomic_write_json, publish_dir

MANIFEST = "ftdata.json"


def _simple_answer(sample: Sample) -> str:
    return json.dumps({"classification": sample.label}, ensure_ascii=False)


def _optimized_answer(sample: Sample) -> str:
    if sample.rationale and sample.rationale.strip():
        return json.dumps({"classification": sample.label, "rationale": sample.rationale.strip()}, ensure_ascii=False)
    return _simple_answer(sample)


NO_RATIONALE = "not annotated"  # old_optimized's rationale where the dataset has none (ToxiGen rows, most normal rows)


def old_optimized_answer(sample: Sample) -> str:
    """``LABEL: hate RATIONALE: <rationale_text>``: one line, as the old optimized format answered."""
    rationale = " ".join((sample.rationale or "").split()) or NO_RATIONALE
    return f"LABEL: {sample.label} RATIONALE: {rationale}"


@dataclass(frozen=True)
class FtFormat:
    """One chat format of fine-tuning data: which prompt (template, strategy) and which answer."""

    prompt: Callable[[Config], tuple[str, Optional[str]]]
    answer: Callable[[Sample], str]


# format name -> its prompt and answer; train.format picks one (hsd.config.TrainConfig.format)
FORMATS: dict[str, FtFormat] = {
    "simple": FtFormat(lambda c: (c.pipeline.finetuned_template, c.pipeline.finetuned_strategy), _simple_answer),
    "optimized": FtFormat(lambda c: (c.pipeline.baseline_template, c.pipeline.baseline_strategy), _optimized_answer),
    "old_optimized": FtFormat(lambda c: ("old_optimized", None), old_optimized_answer),
}


@dataclass(frozen=True)
class Carve:
    train: list[Sample]
    holdout: list[Sample]
    evaluated_ids: frozenset[str]  # never in train or hold-out
    excluded: int  # train rows dropped because they are (or repeat the text of) evaluated samples


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def carve(cfg: Config) -> Carve:
    """Train pool minus evaluated samples -> stratified hold-out + (stratified) train rows."""
    fraction = cfg.train.holdout_fraction
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"train.holdout_fraction must be in (0, 1), got {fraction}")
    data_dir = resolve_data_dir(cfg.data.dir)
    evaluated = select_samples(cfg.data) + [
        s for split in ("val", "test") for s in load_split(data_dir, split)
    ]
    ids, texts = {s.id for s in evaluated}, {_norm(s.text) for s in evaluated}
    train = load_split(data_dir, "train", empty_text=cfg.data.empty_text)
    pool = [s for s in train if s.id not in ids and _norm(s.text) not in texts]
    if len(pool) < 2:
        raise TrainingDataError(
            f"only {len(pool)} train rows remain after removing the {len(train) - len(pool)} evaluated ones "
            f"(data.split={cfg.data.split}, data.subset={cfg.data.subset}); evaluate on another split"
        )
    holdout = stratified_sample(pool, max(1, round(len(pool) * fraction)), cfg.train.seed, where="the train pool")
    held = {s.id for s in holdout}
    rest = [s for s in pool if s.id not in held]
    if cfg.train.max_train_samples != "all":
        rest = stratified_sample(rest, cfg.train.max_train_samples, cfg.train.seed, where="the train rows left after the hold-out")
    leaked = sorted(({s.id for s in rest} | held) & ids)
    if leaked:  # excluded above, so this is a bug; checked anyway: a leak would make every number wrong
        raise RuntimeError(f"fine-tuning rows overlap evaluated samples: {leaked[:5]}")
    return Carve(rest, holdout, frozenset(ids), len(train) - len(pool))


def _completion(tokenizer: Any, messages: list[dict[str, str]], answer: str, prompter: Any) -> str:
    """What the chat template adds for a final assistant turn (``<|channel|>final…<|return|>``)."""
    from hsd.prompts import pin_date

    kwargs = {"tokenize": False, "reasoning_effort": prompter.reasoning_effort}
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, **kwargs)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}],
                                         add_generation_prompt=False, **kwargs)
    before = prompt.find(messages[0]["content"])
    prompt, full = pin_date(prompt, prompter.date, before), pin_date(full, prompter.date, before)
    if not full.startswith(prompt):
        raise TemplateError("the chat template renders a conversation with an answer differently from its "
                            "generation prompt; the answer cannot be appended to the inference prompt")
    return full[len(prompt):]


def format_rows(cfg: Config, fmt: str, samples: list[Sample], tokenizer: Any, exclude_ids: set[str]) -> list[dict[str, Any]]:
    """Chat rows of one format; few-shot examples (rich prompt) never come from ``exclude_ids``."""
    from hsd.prompts import Prompter

    template, strategy = FORMATS[fmt].prompt(cfg)
    answer_of = FORMATS[fmt].answer
    prompt_cfg = replace(cfg, **{"prompt.template": template, "prompt.strategy": strategy})
    prompter = Prompter.from_config(prompt_cfg, tokenizer, exclude_ids)
    rows = []
    for sample in samples:
        messages = prompter.messages(sample)
        answer = answer_of(sample)
        prompt = prompter.render(sample)
        completion = _completion(tokenizer, messages, answer, prompter)
        rows.append({"id": sample.id, "label": sample.label, "target_group": sample.target_group,
                     "messages": messages + [{"role": "assistant", "content": answer}],
                     "prompt": prompt, "completion": completion})
    return rows


def fingerprint(cfg: Config) -> str:
    """Hash of every setting the files depend on: the same hash means the same bytes."""
    keys = {"data": to_dict(cfg.data), "prompt": to_dict(cfg.prompt), "pipeline": to_dict(cfg.pipeline),
            "model": cfg.model.name_or_path, "holdout_fraction": cfg.train.holdout_fraction,
            "seed": cfg.train.seed, "max_train_samples": cfg.train.max_train_samples}
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()


def _existing(out_dir: Path, cfg: Config) -> bool:
    """True when ``out_dir`` already holds this exact data (a resumed job); refuse anything else."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return False
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        raise RunError(f"{out_dir} exists and is not fine-tuning data written by hsd ftdata; choose another --out")
    if json.loads(manifest.read_text(encoding="utf-8"))["fingerprint"] != fingerprint(cfg):
        raise RunError(f"{out_dir} holds fine-tuning data made with other settings; choose another --out")
    return True


def run(cfg: Config, out_dir: str | Path) -> Path:
    """Write every format into ``out_dir`` (temp dir + rename); an identical existing one is reused."""
    from hsd.models.loader import load_tokenizer

    out_dir = Path(out_dir).resolve()
    if _existing(out_dir, cfg):
        return out_dir
    split = carve(cfg)
    tokenizer = load_tokenizer(cfg.model)
    exclude = set(split.evaluated_ids) | {s.id for s in split.holdout}
    with publish_dir(out_dir) as tmp:  # out_dir is missing or empty (checked by _existing)
        hashes = {}
        for fmt in FORMATS:
            for part, samples in (("train", split.train), ("eval", split.holdout)):
                hashes[f"{fmt}/{part}.jsonl"] = _write_jsonl(tmp / fmt / f"{part}.jsonl",
                                                            format_rows(cfg, fmt, samples, tokenizer, exclude))
        (tmp / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        atomic_write_json(tmp / MANIFEST, {  # published whole: it exists only COMPLETED
            "command": "ftdata", "status": Status.COMPLETED.value, "fingerprint": fingerprint(cfg),
            "train_rows": len(split.train), "eval_rows": len(split.holdout),
            "excluded_evaluated_rows": split.excluded, "evaluated_ids": len(split.evaluated_ids),
            "strata": _strata(split), "files_sha256": hashes, "tokenizer": cfg.model.name_or_path})
    return out_dir


def _strata(split: Carve) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for part, samples in (("train", split.train), ("eval", split.holdout)):
        counts: dict[str, int] = {}
        for s in samples:
            key = f"{s.label}/{s.target_group}"
            counts[key] = counts.get(key, 0) + 1
        out[part] = dict(sorted(counts.items()))
    return out
