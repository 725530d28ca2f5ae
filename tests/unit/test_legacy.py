"""hsd import-legacy on the recorded old run: re-parse, --keep-predictions reproduces the old CSVs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hsd.cli import main as cli
from hsd.recipes.import_legacy import LegacyError, import_run

SHARED = Path(__file__).parents[2].parent / "shared"
OLD = SHARED / "reference" / "recorded_runs" / "baseline_std_20251025_175009"
TS = "20251025_175009"

pytestmark = pytest.mark.skipif(not OLD.exists(), reason=f"{OLD} not found (../shared beside the repository)")


def _import(tmp_path: Path, keep: bool) -> Path:
    return import_run(OLD, tmp_path / ("kept" if keep else "reparsed"), keep, "test")


def test_keep_predictions_reproduces_old_metric_csvs(tmp_path):
    out = _import(tmp_path, keep=True)
    for name in (f"performance_metrics_{TS}.csv", f"bias_metrics_{TS}.csv"):
        old = pd.read_csv(OLD / name)
        new = pd.read_csv(out / name)
        assert list(new.columns[: len(old.columns)]) == list(old.columns), name
        pd.testing.assert_frame_equal(new[old.columns], old, check_exact=True)  # float equality
        old_text = (OLD / name).read_text().replace("\r\n", "\n").splitlines()
        new_text = [",".join(line.split(",")[: len(old.columns)])
                    for line in (out / name).read_text().replace("\r\n", "\n").splitlines()]
        assert new_text == old_text, name  # byte for byte in the old columns


def test_keep_predictions_uses_every_csv_row(tmp_path):
    out = _import(tmp_path, keep=True)
    metrics = json.loads((out / "metrics.json").read_text())["strategies"]["baseline_standard"]
    assert metrics["performance"]["n_samples"] == 1009 and metrics["performance"]["unknown_count"] == 7
    records = [json.loads(line) for line in (out / f"intermediate_results_{TS}.jsonl").read_text().splitlines()]
    assert len(records) == 1009 and sum(bool(r["raw_response"]) for r in records) == 253


def test_reparse_reads_every_final_answer(tmp_path):
    out = _import(tmp_path, keep=False)
    records = [json.loads(line) for line in (out / f"intermediate_results_{TS}.jsonl").read_text().splitlines()]
    old = [json.loads(line) for line in (OLD / f"intermediate_results_{TS}.jsonl").read_text().splitlines()]
    assert [r["sample_id"] for r in records] == [str(o["sample_id"]) for o in old]
    with_final = ["assistantfinal" in o["raw_response"] for o in old]
    assert [r["parse_status"].startswith("ok") for r in records] == with_final
    assert {r["persona_tag"] for r in records} == {"LGBTQ", "MEXICAN", "MIDDLE_EAST"}  # from the old CSV
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["import_mode"] == "reparse" and manifest["imported_from"] == str(OLD.resolve())
    perf = json.loads((out / "metrics.json").read_text())["strategies"]["baseline_standard"]["performance"]
    old_f1 = manifest["old_pipeline_predictions"]["baseline_standard"]["f1_score"]
    assert perf["answered"]["f1_score"] > 0.65 > 0.57 > old_f1  # the old parser's loss, corrected
    assert (out / f"evaluation_report_{TS}.txt").read_text().count("Model: openai/gpt-oss-20b") == 1


def test_persona_tag_falls_back_to_target_group_without_csv(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(OLD / f"intermediate_results_{TS}.jsonl", old)
    out = import_run(old, tmp_path / "out", False, "test")
    unified = pd.read_csv(out / f"strategy_unified_results_{TS}.csv")
    assert (unified.persona_tag == unified.target_group_norm).all()


def test_cli_refuses_non_empty_out_and_overwrites_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli(["import-legacy", str(OLD), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["import-legacy", str(OLD), "--out", str(empty), "--keep-predictions"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(empty)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


def _broken(tmp_path: Path, name: str, text: str) -> Path:
    old = tmp_path / "old"
    old.mkdir(exist_ok=True)
    (old / name).write_text(text)
    return old


@pytest.mark.parametrize("name,text,message", [
    (f"intermediate_results_{TS}.jsonl", '{"text": "a", "true_la\n', "no record with a true_label"),
    (f"intermediate_results_{TS}.jsonl", '{"text": "a", "true_label": "bad", "target_group": "x", "raw_response": ""}\n',
     "no record with a true_label"),
    (f"intermediate_results_{TS}.jsonl", "[1, 2]\n\n", "no record with a true_label"),
    ("notes.txt", "nothing", "not an old pipeline run directory"),
])
def test_a_directory_with_nothing_to_score_is_one_clear_error(tmp_path, name, text, message):
    old = _broken(tmp_path, name, text)
    with pytest.raises(LegacyError, match=message):
        import_run(old, tmp_path / "out", False, "test")
    assert not (tmp_path / "out").exists()


def test_missing_dir_several_runs_and_missing_csv(tmp_path):
    with pytest.raises(LegacyError, match="does not exist"):
        import_run(tmp_path / "nope", tmp_path / "out", False, "test")
    old = _broken(tmp_path, f"intermediate_results_{TS}.jsonl",
                  (OLD / f"intermediate_results_{TS}.jsonl").read_text())
    with pytest.raises(LegacyError, match="needs strategy_unified_results"):
        import_run(old, tmp_path / "out", True, "test")
    (old / "intermediate_results_20990101_000000.jsonl").write_text("")
    with pytest.raises(LegacyError, match="several old runs"):
        import_run(old, tmp_path / "out", False, "test")
    assert not (tmp_path / "out").exists()


def test_csv_without_old_columns_is_refused(tmp_path):
    old = _broken(tmp_path, f"strategy_unified_results_{TS}.csv", "strategy,text\nx,y\n")
    with pytest.raises(LegacyError, match="lacks columns"):
        import_run(old, tmp_path / "out", True, "test")


def _row(k: int, **fields) -> dict:
    row = {"sample_id": k, "text": f"text {k}", "true_label": "hate" if k % 2 else "normal", "prediction": "hate",
           "rationale": "JSON parse failed", "strategy": "s", "target_group": "lgbtq", "source": "toxigen"}
    return {**row, **fields}


# (raw_response or a missing marker, label, status): whatever an old row holds as its response.
MISSING = object()
ANY_RESPONSE = [
    ("{{'classification': 'normal', 'rationale': 'x'}}", "normal", "ok_unframed"),  # the old parser's crash
    ('",final{"classification": "hate", "rationale": "x"}', "hate", "ok_unframed"),
    ('{"final": "{"classification": \\"hate\\"}"}', "hate", "ok_unframed"),
    ("Classification: normal\nRationale: x", "normal", "ok_plain_text"),
    ("analysisWe need to classify. It is hateful. So classification: hate. Provide", "unknown",
     "no_final_answer_likely_truncated"),
    (None, "unknown", "empty"),
    ({"classification": "hate"}, "hate", "ok_json"),
    (42, "unknown", "no_final_answer_likely_truncated"),
    (["hate"], "unknown", "no_final_answer_likely_truncated"),
    ("{" * 50_000, "unknown", "unparsable_final"),
    ("\x00final\x00{\ud800", "unknown", "unparsable_final"),
    (MISSING, "unknown", "empty"),
]


def test_reparse_finishes_whatever_the_rows_hold(tmp_path, capsys):
    rows = []
    for k, (raw, _, _) in enumerate(ANY_RESPONSE):
        rows.append(_row(k) if raw is MISSING else _row(k, raw_response=raw, response=raw))
    odd = [_row(20, true_label="HATE ", text=5, sample_id={"rank": 1}, target_group=None, strategy=None,
                raw_response="assistantfinal{\"classification\": \"hate\"}"),
           _row(21, text="line\u2028separator inside", raw_response="{\"classification\": \"normal\"}")]
    lines = [json.dumps(r) for r in rows + odd[:1]] + [json.dumps(odd[1], ensure_ascii=False)]  # raw U+2028
    lines += ["[1, 2]", json.dumps(_row(30, true_label="offensive", raw_response="hate")),
              json.dumps(_row(31, raw_response="analysisWe need to classify the text. It"))[:-30]]  # killed mid-write
    old = _broken(tmp_path, f"intermediate_results_{TS}.jsonl", "\n".join(lines) + "\n")
    (old / f"strategy_unified_results_{TS}.csv").write_text("strategy,text\nx,y\n")  # unreadable: only personas
    assert cli(["import-legacy", str(old), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "persona tags are taken from the jsonl" in err and "4 rows of the old jsonl" in err
    out_jsonl = (tmp_path / "out" / f"intermediate_results_{TS}.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in out_jsonl.split("\n") if line]  # not splitlines: U+2028
    got = {r["text"]: (r["predicted_label"], r["parse_status"]) for r in records}
    assert len(records) == len(got) == len(ANY_RESPONSE) + 3
    assert [got[f"text {k}"] for k in range(len(ANY_RESPONSE))] == [(label, status) for _, label, status in ANY_RESPONSE]
    assert got["5"] == ("hate", "ok_stripped_final") and got["line\u2028separator inside"] == ("normal", "ok_json")
    assert got["text 31"] == ("unknown", "legacy_unreadable_row")  # the line cut off mid-write
    odd_record = next(r for r in records if r["text"] == "5")
    # no strategy: the run's only one, not a phantom strategy "legacy" of its own
    assert (odd_record["strategy"], odd_record["true_label"], odd_record["target_group"]) == ("s", "hate", "unknown")
    assert {r["strategy"] for r in records} == {"s"}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["n_unreadable_rows"] == 4  # the missing response, [1, 2], 'offensive', the cut-off line
    assert [(u["line"], u["kept"]) for u in manifest["unreadable_rows"]] == [
        (len(ANY_RESPONSE), True), (len(lines) - 2, False), (len(lines) - 1, False), (len(lines), True)]


def test_a_cut_off_line_whose_text_is_no_json_string_is_left_out(tmp_path):
    """The salvage of a cut-off line reads its text as a JSON string; a bad escape in it (\\q)
    must leave the line out with a note, not stop the import."""
    good = json.dumps(_row(1, raw_response='{"classification": "hate"}'))
    cut = '{"text": "a\\qb", "true_label": "hate", "raw_respo'
    old = _broken(tmp_path, f"intermediate_results_{TS}.jsonl", good + "\n" + cut + "\n")
    (old / f"strategy_unified_results_{TS}.csv").write_text("strategy,text\nx,y\n")
    assert cli(["import-legacy", str(old), "--out", str(tmp_path / "out")]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(u["line"], u["kept"]) for u in manifest["unreadable_rows"]] == [(2, False)]
    assert "not a readable JSON string" in manifest["unreadable_rows"][0]["reason"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _recorded_copy(tmp_path: Path) -> Path:
    old = tmp_path / "old"
    shutil.copytree(OLD, old)
    return old


def test_a_torn_last_line_makes_no_phantom_strategy(tmp_path, capsys):
    """A run killed mid-write: its last line lacks the strategy (written after raw_response)."""
    old = _recorded_copy(tmp_path)
    jsonl = old / f"intermediate_results_{TS}.jsonl"
    data = jsonl.read_bytes()
    row = {**json.loads(data.splitlines()[-1]), "sample_id": 9999, "text": "caf\u00e9 \u2014 \U0001f600 \u0645\u0631\u062d\u0628\u0627",
           "raw_response": "analysis \U0001f600 assistantfinal"}
    line = json.dumps(row, ensure_ascii=False).encode()
    cut = line[: line.index("\U0001f600 assistant".encode()) + 2]  # inside the raw response's 4-byte emoji
    jsonl.write_bytes(data + cut)
    assert cli(["import-legacy", str(old), "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics["strategies"]) == ["baseline_standard"]  # no strategy "legacy" with F1 nan
    records = [json.loads(x) for x in (tmp_path / "out" / f"intermediate_results_{TS}.jsonl").read_bytes().splitlines()]
    (torn,) = [r for r in records if r["parse_status"] == "legacy_unreadable_row"]
    assert (torn["text"], torn["strategy"], torn["predicted_label"]) == (row["text"], "baseline_standard", "unknown")
    assert "1 rows of the old jsonl" in capsys.readouterr().err


def test_a_row_without_strategy_in_a_run_of_several_is_left_out_and_noted(tmp_path):
    lines = [json.dumps(_row(k, strategy=s, raw_response="hate")) for k, s in ((1, "a"), (2, "b"), (3, None))]
    old = _broken(tmp_path, f"intermediate_results_{TS}.jsonl", "\n".join(lines) + "\n")
    out = import_run(old, tmp_path / "out", False, "test")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_records"] == 2
    assert [(u["line"], u["kept"]) for u in manifest["unreadable_rows"]] == [(3, False)]
    assert "no strategy, and the run has several (a, b)" in manifest["unreadable_rows"][0]["reason"]


@pytest.mark.parametrize("name,keep", [(f"intermediate_results_{TS}.jsonl", False),
                                       (f"strategy_unified_results_{TS}.csv", True)])
def test_a_bad_byte_mid_file_is_one_error_naming_file_and_line_old_run_untouched(tmp_path, capsys, name, keep):
    old = _recorded_copy(tmp_path)
    data = (old / name).read_bytes()
    line3 = sum(len(x) + 1 for x in data.split(b"\n")[:2])  # the first byte of line 3
    (old / name).write_bytes(data[: line3 + 5] + b"\xe9" + data[line3 + 5:])
    before = _tree(old)
    assert cli(["import-legacy", str(old), "--out", str(tmp_path / "out")] + (["--keep-predictions"] if keep else [])) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and str(old / name) in err[0]
    assert "not UTF-8 text: byte 0xE9 at line 3, column 6" in err[0] and "import the copy" in err[0]
    assert _tree(old) == before and not (tmp_path / "out").exists()


def test_an_unreadable_csv_or_report_is_a_warning_when_only_personas_or_the_header_need_it(tmp_path, capsys):
    old = _recorded_copy(tmp_path)
    for name in (f"strategy_unified_results_{TS}.csv", f"evaluation_report_{TS}.txt"):
        (old / name).write_bytes((old / name).read_bytes().replace(b"\n", b"\n\xff", 1))
    assert cli(["import-legacy", str(old), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "persona tags are taken from the jsonl" in err and "leaves out the old model" in err
    assert "line 2, column 1" in err
