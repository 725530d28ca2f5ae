"""One validation run on the tiny model writes every file, once per sample, and fails cleanly."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from _run_helpers import N_SAMPLES, comparable, hsd_cmd, hsd_env, merged_records, write_config
from hsd.config import load_config
from hsd.errors import HsdError
from hsd.runs import RunError
from hsd.recipes.validate import run

pytestmark = pytest.mark.integration

SEED_FILES = ("performance_metrics_{ts}.csv", "bias_metrics_{ts}.csv", "strategy_unified_results_{ts}.csv",
              "evaluation_report_{ts}.txt", "validation_log_{ts}.log", "intermediate_results_{ts}.jsonl")


@pytest.fixture(scope="module")
def cli_run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validate")
    cfg = write_config(tmp, tiny_model_dir)
    # The baseline's own collation by the process started ahead, as on a GPU (hsd.recipes.collate_ahead)
    res = subprocess.run(hsd_cmd("validate", "--config", str(cfg), "report.collate_ahead=true"), capture_output=True,
                         text=True, env=hsd_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp, cfg, res


def test_cli_prints_run_dir_last_and_writes_every_file(cli_run):
    tmp, _, res = cli_run
    run_dir = res.stdout.strip().splitlines()[-1]
    assert run_dir.startswith(str(tmp / "results" / "it" / "validate_simple_"))
    run_dir = type(tmp)(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    ts = manifest["ts"]
    for pattern in SEED_FILES:
        assert (run_dir / pattern.format(ts=ts)).is_file(), pattern
    assert (run_dir / "config.yaml").is_file() and (run_dir / "shards" / "rank0.jsonl").is_file()
    assert manifest["status"] == "COMPLETED" and manifest["world_size"] == 1
    assert manifest["samples"] == N_SAMPLES and manifest["evaluated_this_attempt"] == N_SAMPLES
    assert manifest["samples_per_s"] > 0 and manifest["git_sha"] and manifest["versions"]["torch"]
    log_text = (run_dir / f"validation_log_{ts}.log").read_text()
    assert "20 samples to evaluate" in log_text
    # Where the wall time went: each phase timed once, first output inside generation, all within the command.
    phases = manifest["phases_s"]
    assert list(phases) == ["start_up", "setup", "model", "tokenize", "first_output", "generation", "merge_reports"]
    assert all(v >= 0 for v in phases.values()) and 0 < phases["first_output"] <= phases["generation"]
    assert sum(v for k, v in phases.items() if k not in ("start_up", "first_output")) <= manifest["wall_time_s"] + 0.1
    assert "where the time went (rank 0): start_up" in log_text
    # The baseline's own reports, written by the process started ahead before the command ended
    assert (run_dir / "BASELINE_METRICS.txt").is_file() and (run_dir / "report.html").is_file()
    full = json.loads((run_dir / "metrics_full.json").read_text())
    assert set(full["references"]) == {"always_hate", "always_normal", "tfidf_logreg"}


def test_records_keep_special_tokens_and_parse(cli_run):
    _, _, res = cli_run
    run_dir = type(cli_run[0])(res.stdout.strip().splitlines()[-1])
    records = merged_records(run_dir)
    assert len(records) == N_SAMPLES
    for rec in records.values():
        assert 0 < rec["new_tokens"] <= 16 and rec["prompt_tokens"] > 50
        assert rec["stop_reason"] == "stop" or (rec["stop_reason"], rec["new_tokens"]) == ("length", 16)
        assert (rec["parse_status"] == "no_final_answer_truncated") <= (rec["stop_reason"] == "length")
        assert rec["raw_response"] and len(rec["prompt_hash"]) == 16
        assert rec["predicted_label"] in ("hate", "normal", "unknown") and rec["parse_status"]
        assert rec["strategy"] == "simple" and rec["latency_s"] > 0
    # The random model emits harmony markers now and then; they must survive decoding.
    text = "".join(r["raw_response"] for r in records.values())
    assert "<|" in text or all(r["new_tokens"] == 16 for r in records.values())


def test_resume_of_a_complete_run_redoes_nothing(cli_run, tiny_model_dir):
    tmp, cfg_path, res = cli_run
    run_dir = type(tmp)(res.stdout.strip().splitlines()[-1])
    def files() -> dict:  # the lock's holder line names the last process that took it
        return {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}

    before = files()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert run(load_config(cfg_path), run_dir) == run_dir
    # Nothing to do: the recorded figures (samples/s, generation_s, attempt) stay as they were, byte for byte.
    assert files() == before
    assert manifest["attempt"] == 1 and manifest["status"] == "COMPLETED" and manifest["samples_per_s"] > 0


def test_each_prompt_is_stored_exactly_and_the_shared_prefix_once(cli_run, capsysbinary):
    from hsd.cli import main
    from hsd.data import select_samples
    from hsd.models.loader import load_tokenizer
    from hsd.prompt_files import full_prompt
    from hsd.prompts import Prompter

    run_dir = type(cli_run[0])(cli_run[2].stdout.strip().splitlines()[-1])
    cfg = load_config(run_dir / "config.yaml")
    tokenizer, samples = load_tokenizer(cfg.model), select_samples(cfg.data)
    prompter = Prompter.from_config(cfg, tokenizer, {s.id for s in samples})
    records = merged_records(run_dir)
    for sample in samples:  # the run's prompts, rendered again now, are the stored ones byte for byte
        rec, fed = records[sample.id], prompter.render(sample)
        assert full_prompt(run_dir, rec["prompt_prefix_hash"], rec["prompt_tail"], rec["prompt_hash"]) == fed
        assert rec["prompt_tokens"] == len(tokenizer(fed, add_special_tokens=False)["input_ids"])
        assert rec["prompt_tail"].startswith(sample.text)
    # a tail is the sample's text + the same few closing characters (the rest of the user turn)
    assert len({len(records[s.id]["prompt_tail"]) - len(s.text) for s in samples}) == 1
    (prefix,) = (run_dir / "prompts").iterdir()
    system = prompter.template.system_prompt
    assert prefix.read_text(encoding="utf-8").count(system) == 1
    for name in ("intermediate_results_*.jsonl", "shards/rank0.jsonl", "strategy_unified_results_*.csv"):
        (file,) = run_dir.glob(name)
        text = file.read_text(encoding="utf-8")
        assert system not in text and json.dumps(system)[1:-1] not in text, f"{name} repeats the system prompt"
    assert main(["show", str(run_dir), samples[3].id, "--prompt-only"]) == 0
    assert capsysbinary.readouterr().out == prompter.render(samples[3]).encode("utf-8")
    assert main(["show", str(run_dir), samples[3].id]) == 0
    out = capsysbinary.readouterr().out.decode("utf-8")
    rec = records[samples[3].id]
    assert prompter.render(samples[3]) in out and rec["raw_response"] in out
    assert f"parse status     {rec['parse_status']}\n" in out and f"target group     {rec['target_group']}\n" in out


def test_batch_size_does_not_change_greedy_records(cli_run, tiny_model_dir, tmp_path):
    _, _, res = cli_run
    reference = merged_records(type(tmp_path)(res.stdout.strip().splitlines()[-1]))
    cfg = load_config(write_config(tmp_path, tiny_model_dir, inference={"batch_size": 7}))
    other = merged_records(run(cfg, tmp_path / "bs7"))
    assert {k: comparable(v) for k, v in other.items()} == {k: comparable(v) for k, v in reference.items()}


def test_resume_with_a_changed_config_is_refused(cli_run, tmp_path):
    tmp, cfg_path, res = cli_run
    run_dir = type(tmp)(res.stdout.strip().splitlines()[-1])
    saved = (run_dir / "config.yaml").read_text()
    manifest = (run_dir / "manifest.json").read_text()
    changed = load_config(cfg_path, ["inference.max_new_tokens=8"])
    with pytest.raises(RunError, match=r"inference\.max_new_tokens: saved 16, now 8.*new run directory"):
        run(changed, run_dir)
    assert (run_dir / "config.yaml").read_text() == saved and (run_dir / "manifest.json").read_text() == manifest


def test_missing_model_dir_fails_before_creating_the_run(tmp_path):
    cfg = load_config(write_config(tmp_path, tmp_path / "no-such-model"))
    with pytest.raises(HsdError, match="model directory not found"):
        run(cfg)
    assert not (tmp_path / "results").exists()


def _unwritable(tmp_path):
    """A results directory that cannot be created: under a read-only dir, or (as root, who
    ignores permissions) under a regular file."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        return locked / "results"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    return blocker / "results"


def test_unwritable_results_dir_is_one_clear_error(tiny_model_dir, tmp_path):
    cfg = yaml.safe_load(write_config(tmp_path, tiny_model_dir).read_text())
    cfg["results_dir"] = str(_unwritable(tmp_path))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run(hsd_cmd("validate", "--config", str(tmp_path / "c.yaml")), capture_output=True,
                         text=True, env=hsd_env(), timeout=300)
    assert out.returncode == 2
    assert out.stderr.startswith("error: cannot write to") and "results_dir" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_run_directory_in_use_is_refused(tiny_model_dir, tmp_path):
    from hsd.runs import RunLock

    run_dir = tmp_path / "busy"
    with RunLock(run_dir / ".lock"):
        with pytest.raises(RunError, match="in use"):
            run(load_config(write_config(tmp_path, tiny_model_dir)), run_dir)
    assert not (run_dir / "shards").exists() and not (run_dir / "config.yaml").exists()


def test_cli_ends_with_the_metrics_table_logs_progress_and_tensorboard_holds_the_csv_numbers(cli_run):
    """What the trackers show equals the performance and bias CSVs (TensorBoard, the default tracker)."""
    import math

    import pandas as pd

    from _report_helpers import tensorboard_scalars, tensorboard_texts
    from hsd.tracking import installed

    _, _, res = cli_run
    run_dir = type(cli_run[0])(res.stdout.strip().splitlines()[-1])
    ts = json.loads((run_dir / "manifest.json").read_text())["ts"]
    perf = pd.read_csv(run_dir / f"performance_metrics_{ts}.csv").iloc[0]
    table = res.stdout.strip().splitlines()[-4:-1]  # the table, then the run directory
    shown = "n/a" if math.isnan(perf["accuracy"]) else f"{perf['accuracy']:.4f}"
    assert table[0].startswith("| strategy | accuracy") and f"| {perf['strategy']} | {shown} |" in table[2]
    log_text = (run_dir / f"validation_log_{ts}.log").read_text()
    assert f"validate rank 0: {N_SAMPLES}/{N_SAMPLES} samples (100%)" in log_text
    if not installed("tensorboard"):
        pytest.skip("tensorboard is not installed")
    logged = {tag: values[-1][1] for tag, values in tensorboard_scalars(run_dir / "tracker").items()}
    close = lambda a, b: math.isclose(a, b, rel_tol=1e-6) or (math.isnan(a) and math.isnan(b))
    for col in ("accuracy", "precision", "recall", "f1_score", "mcc", "balanced_accuracy", "unknown_rate",
                "unknown_count", "n_samples"):
        assert close(logged[f"metrics/{col}"], float(perf[col])), col
    for row in pd.read_csv(run_dir / f"bias_metrics_{ts}.csv").itertuples():
        assert close(logged[f"bias/{row.persona_tag}/sample_count"], float(row.sample_count))
        for col in ("false_positive_rate", "false_negative_rate"):
            # an undefined rate: the CSV writes 0.0 as the old files did and says so; the reports and trackers n/a
            want = float(getattr(row, col)) if getattr(row, f"{col}_defined") else math.nan
            assert close(logged[f"bias/{row.persona_tag}/{col}"], want), (row.persona_tag, col)
    records = merged_records(run_dir).values()
    for status in {r["parse_status"] for r in records}:
        assert logged[f"parse_status/{status}"] == sum(r["parse_status"] == status for r in records)
    assert "| strategy | accuracy" in tensorboard_texts(run_dir / "tracker")["report/metrics_table"]
