"""``hsd show RUN SAMPLE_ID``: the prompt the model saw (rebuilt from the run's files), what it answered,
and one clear error for each way RUN or SAMPLE_ID can be wrong.

The runs here are written by hand (records + prefix files, as hsd.recipes.validate writes them); the
tiny-model run is shown in tests/integration/test_validate.py, an old run in test_old_runs.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hsd.cli import main
from hsd.config import dump_config, load_config
from hsd.prompt_files import SplitPrompt, prompt_hash, write_prefixes
from hsd.records import Record

OLD_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "runs_3bc6d1b" / "complete"
SYSTEM = "<|start|>system<|message|>You are a careful moderator.\nRules: …<|end|><|start|>user<|message|>Text: "
TEXTS = {"s01": "they should all leave 🙂", "s02": "good neighbours", "t07": "line\r\nbreak"}
RAW = '<|channel|>analysis<|message|>insult.<|end|><|start|>assistant<|channel|>final<|message|>' \
      '{"classification": "hate", "rationale": "slur"}<|return|>'


def write_run(run: Path, adapter: str | None = None) -> dict[str, str]:
    """A finished-looking run of three samples; returns each sample's full prompt."""
    prompts = {sid: SplitPrompt(SYSTEM, text + "<|end|><|start|>assistant") for sid, text in TEXTS.items()}
    write_prefixes(run, prompts.values())
    cfg = load_config(None, [f"model.adapter={adapter}"] if adapter else [])
    (run / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
    records = [Record(sid, text, "normal", "mexican", "mexican_raw", "toxigen", "simple", prompt_hash(prompts[sid].text),
                      RAW, "hate", "slur", "ok_harmony_final", 0.1, new_tokens=12, stop_reason="stop",
                      prompt_prefix_hash=prompts[sid].prefix_hash, prompt_tail=prompts[sid].tail)
               for sid, text in TEXTS.items()]
    (run / "shards").mkdir()
    (run / "shards" / "rank0.jsonl").write_text(
        "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return {sid: p.text for sid, p in prompts.items()}


@pytest.fixture
def run(tmp_path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "exp" / "baseline"
    return path, write_run(path)


def test_show_prints_the_prompt_the_response_and_the_answer(run, capsys):
    path, prompts = run
    assert main(["show", str(path), "s01"]) == 0
    out = capsys.readouterr().out
    assert prompts["s01"] + "\n" in out and RAW in out
    answer = out.split("==== answer ====")[1]
    for line in ("predicted label  hate", "parse status     ok_harmony_final", "rationale        slur",
                 "true label       normal", "target group     mexican", "outcome          false positive"):
        assert f"\n{line}\n" in answer + "\n"
    assert f"stored as    prompts/prefix-{prompt_hash(SYSTEM)}.txt (shared by the run's samples, {len(SYSTEM)} " in out
    assert out.index("prompt: what the model saw") < out.index(prompts["s01"]) < out.index("response: what it")


def test_prompt_only_writes_exactly_the_prompt(run, capsysbinary):
    path, prompts = run
    assert main(["show", str(path), "t07", "--prompt-only"]) == 0
    assert capsysbinary.readouterr().out == prompts["t07"].encode("utf-8")  # "\r\n" and all, nothing added


def test_answer_only_and_json(run, capsys):
    path, prompts = run
    assert main(["show", str(path), "s02", "--answer-only"]) == 0
    out = capsys.readouterr().out
    assert SYSTEM not in out and RAW in out and "outcome          false positive" in out
    assert main(["show", str(path), "s02", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["prompt"] == prompts["s02"] and obj["predicted_label"] == "hate" and obj["run"] == str(path.resolve())


def test_an_experiment_directory_needs_run_by_name_or_role(run, capsys):
    path, prompts = run
    write_run(path.parent / "finetuned", adapter=str(path.parent / "train" / "adapter"))
    assert main(["show", str(path.parent), "s01"]) == 2
    assert "holds 2 validation runs (baseline, finetuned): pick one with --run NAME" in capsys.readouterr().err
    assert main(["show", str(path.parent), "s01", "--run", "fine-tuned", "--answer-only"]) == 0
    assert f"run          {path.parent / 'finetuned'}  (fine-tuned" in capsys.readouterr().out
    assert main(["show", str(path.parent), "s01", "--run", "baseline", "--prompt-only"]) == 0
    assert capsys.readouterr().out == prompts["s01"]
    assert main(["show", str(path.parent), "s01", "--run", "other"]) == 2
    assert "--run other: no such run" in capsys.readouterr().err
    # by name under --results-dir: EXPERIMENT --run RUN, or EXPERIMENT/RUN
    results = str(path.parent.parent)
    assert main(["show", "exp", "s01", "--run", "finetuned", "--results-dir", results, "--answer-only"]) == 0
    assert "(fine-tuned" in capsys.readouterr().out
    assert main(["show", "exp/baseline", "s01", "--results-dir", results, "--answer-only"]) == 0
    assert "(baseline" in capsys.readouterr().out


def test_a_comparison_directory_names_its_runs(run, capsys):
    path, _ = run
    comp = path.parent / "comparison"
    comp.mkdir()
    (comp / "comparison.json").write_text(json.dumps({"runs": [{"info": {"path": str(path)}}]}))
    assert main(["show", str(comp), "s01", "--answer-only"]) == 0
    assert f"run          {path}  (baseline" in capsys.readouterr().out


def test_errors_say_what_where_and_how_to_fix(run, tmp_path, capsys):
    path, _ = run
    assert main(["show", str(tmp_path / "nope"), "s01"]) == 2
    assert "nope does not exist: pass a validation run directory" in capsys.readouterr().err
    assert main(["show", "nope", "s01", "--results-dir", str(tmp_path)]) == 2
    assert f"nope does not exist (nor under {tmp_path}/)" in capsys.readouterr().err
    assert main(["show", str(path), "s1"]) == 2
    err = capsys.readouterr().err
    assert "sample id 's1' is not in" in err and "did you mean s01" in err
    assert main(["show", str(path), "zzz"]) == 2
    assert "ids there include s01, s02, t07" in capsys.readouterr().err
    assert main(["show", str(path), "s01", "--json", "--prompt-only"]) == 2
    (path / "prompts" / f"prefix-{prompt_hash(SYSTEM)}.txt").unlink()
    assert main(["show", str(path), "s01"]) == 2
    assert "is missing" in capsys.readouterr().err


def test_a_run_recorded_before_prompts_were_stored(tmp_path, capsys):
    old = shutil.copytree(OLD_RUN, tmp_path / "complete")
    sid = json.loads((old / "shards" / "rank0.jsonl").read_text().splitlines()[0])["sample_id"]
    assert main(["show", str(old), sid]) == 2
    err = capsys.readouterr().err
    assert "recorded by an older hsd" in err and "prompts were not stored" in err
    assert "--answer-only" in err and f"hsd validate --config {old}/config.yaml --run-dir NEW_DIR" in err
    assert main(["show", str(old), sid, "--answer-only"]) == 0
    assert "predicted label" in capsys.readouterr().out
