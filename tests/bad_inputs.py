"""The bad-input table: one scenario per way a user can hand hsd something wrong.

Each :class:`BadInput` edits a fresh :class:`scenario.Scenario` (a synthetic data directory, a
config, a results directory holding an earlier run) and names the command to run, the exit code
and the key words of the one ``error:`` line it must print. ``tests/unit/test_bad_input.py`` runs
every case and checks that no file that existed before the command changed; the README's
"Reliability" table is generated from :data:`CASES` (``tests/reliability_table.py``), so the
table and the tests cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from scenario import Scenario

@dataclass(frozen=True)
class BadInput:
    """One row of the table. ``edit`` changes the scenario and returns the hsd arguments."""

    id: str
    area: str  # data | template | config | model | adapter | training | results
    given: str  # what is wrong, as the README shows it
    edit: Callable[[Scenario], list[str]]
    keywords: tuple[str, ...] = ()  # all must appear in the single error line
    exit_code: int = 2  # 0: the input is valid and must load (a BOM, CRLF line ends, ...)
    log_keywords: tuple[str, ...] = ()  # for accepted inputs: the warning that must be logged
    new_files: bool = False  # the command may create files (never change existing ones)

    @property
    def expected(self) -> str:
        if self.exit_code == 0:
            warn = f", warns `{' … '.join(self.log_keywords)}`" if self.log_keywords else ""
            return f"loads and runs (exit 0){warn}"
        return f"exit {self.exit_code}: `{' … '.join(self.keywords)}`"


# ---------------------------------------------------------------------------------------------
# Edits
# ---------------------------------------------------------------------------------------------


def _rows_edit(change: Callable[[list[dict]], list[Any]]) -> Callable[[Scenario], list[str]]:
    def edit(sc: Scenario) -> list[str]:
        sc.set_rows(change(sc.rows()))
        return sc.validate()
    return edit


def _set(row_index: int, **fields: Any) -> Callable[[list[dict]], list[dict]]:
    def change(rows: list[dict]) -> list[dict]:
        rows[row_index].update(fields)
        return rows
    return change


def _drop(row_index: int, key: str) -> Callable[[list[dict]], list[dict]]:
    def change(rows: list[dict]) -> list[dict]:
        del rows[row_index][key]
        return rows
    return change


def _duplicate_id(rows: list[dict]) -> list[dict]:
    rows[4]["original_id"] = rows[1]["original_id"]
    return rows


def _other_case(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["label_binary"] = row["label_binary"].upper()
    rows[0]["target_group_norm"] = " LGBTQ "
    return rows


def _raw_file(make: Callable[[Scenario], bytes]) -> Callable[[Scenario], list[str]]:
    def edit(sc: Scenario) -> list[str]:
        sc.split_file().write_bytes(make(sc))
        return sc.validate()
    return edit


def _json_lines(sc: Scenario) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in sc.rows()).encode()


def _bom(sc: Scenario) -> bytes:
    return b"\xef\xbb\xbf" + json.dumps(sc.rows(), indent=1).encode()


def _crlf(sc: Scenario) -> bytes:
    return json.dumps(sc.rows(), indent=1).replace("\n", "\r\n").encode()


def _malformed(sc: Scenario) -> bytes:
    return json.dumps(sc.rows(), indent=1).encode()[:-40]


def _template(user_template: str) -> Callable[[Scenario], list[str]]:
    def edit(sc: Scenario) -> list[str]:
        path = sc.root / "my_template.yaml"
        path.write_text(yaml.safe_dump({
            "name": "mine", "system_prompt": "Classify the post.", "user_template": user_template,
            "parameters": {"max_tokens": 8, "temperature": 0.0, "top_p": 1.0}}))
        sc.config["prompt"]["template"] = str(path)
        return sc.validate()
    return edit


def _legacy_unknown_strategy(sc: Scenario) -> list[str]:
    path = sc.root / "legacy.json"
    entry = {"system_prompt": "Classify.", "user_template": "Text: {text}",
             "parameters": {"max_tokens": 8, "temperature": 0.0, "top_p": 1.0}}
    path.write_text(json.dumps({"strategies": {"baseline": entry, "policy": entry}}))
    sc.config["prompt"].update(template=str(path), strategy="baseline_v2")
    return sc.validate()


def _config(section: str, key: str, value: Any) -> Callable[[Scenario], list[str]]:
    def edit(sc: Scenario) -> list[str]:
        if section:
            sc.config.setdefault(section, {})[key] = value
        else:
            sc.config[key] = value
        return sc.validate()
    return edit


def _override(*overrides: str) -> Callable[[Scenario], list[str]]:
    return lambda sc: sc.validate() + list(overrides)


def _python_tag(sc: Scenario) -> list[str]:
    path = sc.root / "evil.yaml"
    path.write_text("experiment: !!python/object/apply:os.system ['touch pwned']\n")
    return ["validate", "--config", str(path)]


def _not_a_model(sc: Scenario) -> list[str]:
    empty = sc.root / "empty_model"
    empty.mkdir()
    (empty / "README.md").write_text("weights go here\n")
    sc.config["model"]["name_or_path"] = str(empty)
    return sc.validate()


def _model_without_tokenizer(sc: Scenario) -> list[str]:
    import shutil

    partial = sc.root / "weights_only"
    partial.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(sc.model_dir / name, partial / name)
    sc.config["model"]["name_or_path"] = str(partial)
    return sc.validate()


def _adapter(files: dict[str, str]) -> Callable[[Scenario], list[str]]:
    def edit(sc: Scenario) -> list[str]:
        adapter = sc.root / "adapter"
        adapter.mkdir()
        for name, text in files.items():
            (adapter / name).write_text(text)
        sc.config["model"]["adapter"] = str(adapter)
        return sc.validate()
    return edit


_PEFT_CONFIG = json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]})


def _results_is_file(sc: Scenario) -> list[str]:
    blocker = sc.root / "results_file"
    blocker.write_text("a file where the results directory should be\n")
    sc.config["results_dir"] = str(blocker / "results")
    return sc.validate()


def _resume_other_config(sc: Scenario) -> list[str]:
    return sc.validate("--run-dir", str(sc.earlier_run), "inference.max_new_tokens=5")


def _corrupt_shard(sc: Scenario) -> list[str]:
    shard = sc.earlier_run / "shards" / "rank0.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"
    shard.write_text("".join(lines))
    return sc.validate("--run-dir", str(sc.earlier_run))


_GOOD_ROW = json.dumps({"prompt": "<|start|>user<|message|>Text: hi<|end|><|start|>assistant",
                        "completion": '<|channel|>final<|message|>{"classification": "hate"}<|return|>'})
OLD_RUN = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "recorded_runs" / "baseline_std_20251025_175009"


def _training_run(sc: Scenario) -> Path:
    """A completed training run as `hsd train` leaves it: manifest, config, log, adapter."""
    from hsd.config import dump_config, from_dict
    from hsd.runs import base_manifest

    run = sc.results_dir / "exp" / "trained"
    (run / "adapter").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(from_dict(sc.config)), encoding="utf-8")
    (run / "manifest.json").write_text(json.dumps({**base_manifest("train"), "status": "COMPLETED", "steps": 2}))
    (run / "train_log.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.1}\n')
    (run / "adapter" / "adapter_config.json").write_text(_PEFT_CONFIG)
    return run


def _legacy_import(sc: Scenario) -> Path:
    """The real recorded gpt-oss run, imported with `hsd import-legacy`."""
    from hsd.recipes.import_legacy import import_run

    if not OLD_RUN.is_dir():
        pytest.skip(f"{OLD_RUN} is not here (../shared/reference)")
    return import_run(OLD_RUN, sc.results_dir / "exp" / "imported", False, "hsd import-legacy")


def _ftdata(sc: Scenario) -> Path:
    """Fine-tuning data written by `hsd ftdata` for this scenario's config."""
    from hsd.config import from_dict
    from hsd.training.ftdata import run

    return run(from_dict(sc.config), sc.results_dir / "exp" / "ftdata")


def _experiment_root(sc: Scenario) -> Path:
    """An experiment directory as `hsd submit` leaves it (jobs.json beside its runs)."""
    exp = sc.results_dir / "exp"
    (exp / "jobs.json").write_text(json.dumps({"experiment_dir": ".", "command": "baseline", "executor": "local",
                                               "submitted": "2026-12-01T10:00:00", "jobs": []}))
    return exp


def _foreign(sc: Scenario) -> Path:
    """A folder hsd did not write (a user's notes) given as the run directory."""
    folder = sc.root / "my_notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("check the FPR of the lgbtq group\n")
    return folder


def _train_file_latin1(sc: Scenario) -> list[str]:
    """A fine-tuning file saved in Windows-1252 by an editor: a byte that is not UTF-8 on line 2."""
    data = sc.ftdata_dir([_GOOD_ROW, _GOOD_ROW.replace("Text: hi", "Text: caf\u00e9")])
    train = data / "simple" / "train.jsonl"
    train.write_bytes(train.read_bytes().replace("caf\u00e9".encode(), b"caf\xe9"))
    return sc.train(data)


def _ds_config_latin1(sc: Scenario) -> list[str]:
    """A custom DeepSpeed JSON with a Windows-1252 byte in a comment-like string."""
    path = sc.root / "my_zero3.json"
    path.write_bytes(b'{"zero_optimization": {"stage": 3}, "comment": "r\xe9sum\xe9"}')
    return [*sc.train(sc.ftdata_dir([_GOOD_ROW])), f"train.ds_config={path}"]


def _validate_into(make: Callable[[Scenario], Path]) -> Callable[[Scenario], list[str]]:
    return lambda sc: sc.validate("--run-dir", str(make(sc)))


def _train_into(make: Callable[[Scenario], Path], *overrides: str) -> Callable[[Scenario], list[str]]:
    def edit(sc: Scenario) -> list[str]:
        data = sc.ftdata_dir([_GOOD_ROW])
        return ["train", "--config", str(sc.config_path()), "--data", str(data), "--run-dir", str(make(sc)),
                *overrides]
    return edit


def _train_lines(lines: list[str]) -> Callable[[Scenario], list[str]]:
    return lambda sc: sc.train(sc.ftdata_dir(lines))


_NO_ASSISTANT = json.dumps({"messages": [{"role": "system", "content": "Classify."},
                                         {"role": "user", "content": "Text: hello"}]})

CASES: tuple[BadInput, ...] = (
    # data
    BadInput("data-bom", "data", "dataset file starts with a UTF-8 BOM", _raw_file(_bom), exit_code=0),
    BadInput("data-crlf", "data", "dataset file with CRLF line ends", _raw_file(_crlf), exit_code=0),
    BadInput("data-label-case", "data", "labels `HATE`/`NORMAL`, group `\" LGBTQ \"`", _rows_edit(_other_case),
             exit_code=0, log_keywords=("read after lower-casing",)),
    BadInput("data-json-lines", "data", "JSON Lines file where a JSON list is expected", _raw_file(_json_lines),
             ("JSON Lines", "expects one JSON list", "jq -s")),
    BadInput("data-malformed", "data", "truncated (malformed) JSON", _raw_file(_malformed),
             ("malformed JSON at line",)),
    BadInput("data-text-null", "data", "`text: null` in row 2", _rows_edit(_set(2, text=None)),
             ("row 2", "'text' is null")),
    BadInput("data-no-text", "data", "row without `text`", _rows_edit(_drop(3, "text")),
             ("row 3", "'text' is missing")),
    BadInput("data-no-label", "data", "row without `label_binary`", _rows_edit(_drop(1, "label_binary")),
             ("row 1", "'label_binary' is missing")),
    BadInput("data-bad-label", "data", "label `offensive`", _rows_edit(_set(0, label_binary="offensive")),
             ("row 0", "'offensive'", "valid values: hate, normal")),
    BadInput("data-duplicate-ids", "data", "two rows with the same `original_id`", _rows_edit(_duplicate_id),
             ("row 4", "duplicates row 1")),
    BadInput("data-unknown-group", "data", "target group `martians`",
             _rows_edit(_set(5, target_group_norm="martians")),
             ("row 5", "'martians'", "lgbtq, mexican, middle_east")),
    BadInput("data-not-utf8", "data", "dataset file in Latin-1 (not UTF-8)",
             _raw_file(lambda sc: json.dumps(sc.rows()).replace("#0", "caf\u00e9").encode("latin-1")),
             ("not UTF-8", "re-save the file as UTF-8")),
    BadInput("data-dir-missing", "data", "`data.dir` does not exist", _config("data", "dir", "/nonexistent/data"),
             ("data directory /nonexistent/data does not exist", "HSD_DATA_DIR")),
    BadInput("data-empty-split", "data", "empty split file (`[]`)", _rows_edit(lambda rows: []),
             ("list is empty",)),
    BadInput("data-unknown-subset", "data", "`data.subset: canned_typo`", _config("data", "subset", "canned_typo"),
             ("unknown subset 'canned_typo'",)),
    BadInput("data-too-many", "data", "`data.max_samples` above the split size", _config("data", "max_samples", 500),
             ("max_samples=500", "only 6 samples")),
    # templates
    BadInput("template-typo", "template", "placeholder typo `{txt}`", _template("Text: {txt}"),
             ("unknown placeholder {txt}", "valid placeholders: {text}")),
    BadInput("template-no-text", "template", "template without `{text}`", _template("Classify the post."),
             ("no {text} placeholder",)),
    BadInput("template-unknown-strategy", "template", "legacy JSON, unknown `prompt.strategy`",
             _legacy_unknown_strategy, ("unknown strategy 'baseline_v2'", "baseline, policy")),
    # configs
    BadInput("config-negative-batch", "config", "`inference.batch_size=-2`", _override("inference.batch_size=-2"),
             ("inference.batch_size", "must be > 0")),
    BadInput("config-zero-new-tokens", "config", "`inference.max_new_tokens=0`", _override("inference.max_new_tokens=0"),
             ("inference.max_new_tokens", "must be > 0")),
    BadInput("config-unknown-backend", "config", "`inference.backend: vllm` (not registered)",
             _config("inference", "backend", "vllm"), ("unknown inference backend 'vllm'", "deepspeed, hf")),
    BadInput("config-unknown-key", "config", "`inference.batchsize: 8` (typo)", _config("inference", "batchsize", 8),
             ("unknown key 'inference.batchsize'", "batch_size")),
    BadInput("config-wrong-type", "config", "`inference.batch_size: eight`", _config("inference", "batch_size", "eight"),
             ("inference.batch_size", "must be int")),
    BadInput("config-escape", "config", "`experiment: ../../etc`", _config("", "experiment", "../../etc"),
             ("experiment name '../../etc' is not allowed", "results directory")),
    BadInput("config-run-name-escape", "config", "`run_name: ../other_exp/run`", _config("", "run_name", "../other_exp/run"),
             ("run name '../other_exp/run' is not allowed",)),
    BadInput("config-python-tag", "config", "YAML with a `!!python/object` tag", _python_tag,
             ("not valid YAML", "python/object")),
    BadInput("config-missing-file", "config", "`--config` file does not exist",
             lambda sc: ["validate", "--config", str(sc.root / "nope.yaml")], ("config file not found",)),
    # model paths and adapters
    BadInput("model-missing", "model", "`model.name_or_path` directory does not exist",
             _config("model", "name_or_path", "/nonexistent/gpt-oss-20b"), ("model directory not found",)),
    BadInput("model-not-a-model", "model", "model directory without `config.json`", _not_a_model,
             ("not a model directory", "config.json")),
    BadInput("model-no-tokenizer", "model", "model directory with weights but no tokenizer files",
             _model_without_tokenizer, ("cannot load the tokenizer",)),
    BadInput("adapter-not-peft", "adapter", "`adapter_config.json` without `peft_type`",
             _adapter({"adapter_config.json": "{}", "adapter_model.safetensors": ""}),
             ("not a peft adapter config", "peft_type")),
    BadInput("adapter-not-safetensors", "adapter", "adapter weights only as pickle (`adapter_model.bin`)",
             _adapter({"adapter_config.json": _PEFT_CONFIG, "adapter_model.bin": "pickle"}),
             ("no adapter_model.safetensors", "safetensors only")),
    BadInput("adapter-missing", "adapter", "`model.adapter` directory does not exist",
             _config("model", "adapter", "/nonexistent/adapter"), ("LoRA adapter not found", "adapter_config.json")),
    # results directory and runs
    BadInput("results-unwritable", "results", "`results_dir` below a regular file", _results_is_file,
             ("cannot write to", "results_dir")),
    BadInput("results-resume-other-config", "results", "resuming a run with another `max_new_tokens`",
             _resume_other_config, ("started with other settings", "inference.max_new_tokens: saved")),
    BadInput("results-validate-into-training-run", "results", "`hsd validate --run-dir` a training run's directory",
             _validate_into(_training_run), ("is a run of `hsd train`", "not of `hsd validate`", "new run directory")),
    BadInput("results-validate-into-legacy-import", "results", "`hsd validate --run-dir` an imported legacy run",
             _validate_into(_legacy_import), ("is a run of `hsd import-legacy`", "new run directory")),
    BadInput("results-validate-into-ftdata", "results", "`hsd validate --run-dir` a fine-tuning data folder",
             _validate_into(_ftdata), ("is fine-tuning data (hsd ftdata)", "not a run directory")),
    BadInput("results-validate-into-experiment", "results", "`hsd validate --run-dir` an experiment root",
             _validate_into(_experiment_root), ("is an experiment directory", "not a run directory")),
    BadInput("results-validate-into-folder", "results", "`hsd validate --run-dir` a folder of the user's files",
             _validate_into(_foreign), ("holds no hsd manifest.json", "not a run hsd wrote")),
    BadInput("training-file-not-utf8", "training", "fine-tuning file with a Windows-1252 byte on line 2",
             _train_file_latin1, ("train.jsonl: not UTF-8 text", "line 2", "iconv"), new_files=True),
    BadInput("training-ds-config-not-utf8", "training", "`train.ds_config` JSON with a Windows-1252 byte",
             _ds_config_latin1, ("my_zero3.json: not UTF-8 text", "line 1"), new_files=True),
    BadInput("training-into-validation-run", "training", "`hsd train --run-dir` a validation run's directory",
             _train_into(lambda sc: sc.earlier_run), ("is a run of `hsd validate`", "not of `hsd train`"),
             new_files=True),
    BadInput("training-resume-other-settings", "training", "a completed training resumed with another `train.lora.r`",
             _train_into(_training_run, "train.lora.r=2"), ("started with other settings", "train.lora.r: saved"),
             new_files=True),
    BadInput("results-corrupt-shard", "results", "resuming a run whose shard has a corrupt middle line",
             _corrupt_shard, ("line 2 is not valid JSON", "keep a copy of the shard")),
    # fine-tuning files
    BadInput("training-empty-file", "training", "empty `train.jsonl`", _train_lines([]),
             ("train.jsonl", "the file is empty"), new_files=True),
    BadInput("training-no-assistant", "training", "training row without an assistant turn",
             _train_lines([_NO_ASSISTANT]), ("train.jsonl line 1", "no assistant turn"), new_files=True),
)
