"""hsd.data: schema validation, the data directory, stratified subsets and `hsd data`."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from hsd import cli
from hsd.config import load_config
from hsd.data import (
    TARGET_GROUPS,
    allocate,
    available_subsets,
    load_samples,
    load_split,
    resolve_data_dir,
    select,
    select_samples,
    stratified_sample,
)
from hsd.data import setup as data_setup
from hsd.errors import DataError

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED_DATA / "unified").is_dir(), reason=f"{SHARED_DATA} not present")


def row(i: int, label: str = "hate", group: str = "lgbtq", **extra) -> dict:
    base = {
        "text": f"sample text {i}", "label_binary": label, "label_multiclass": "x",
        "target_group_norm": group, "persona_tag": group, "source_dataset": "toxigen",
        "rationale_text": None, "original_id": f"id{i}", "split": "train",
    }
    base.update(extra)
    return base


def balanced_rows(per_stratum: int, prefix: str = "s") -> list[dict]:
    rows, i = [], 0
    for group in TARGET_GROUPS:
        for label in ("hate", "normal"):
            for _ in range(per_stratum):
                rows.append(row(i, label, group, original_id=f"{prefix}{i}", text=f"{prefix} text {i}"))
                i += 1
    return rows


def write_json(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def make_data_dir(root: Path) -> Path:
    write_json(root / "unified" / "unified_train.json", balanced_rows(5, "tr"))
    write_json(root / "unified" / "unified_val.json", balanced_rows(2, "va"))
    write_json(root / "unified" / "unified_test.json", balanced_rows(4, "te"))
    write_json(root / "canned" / "small_set.json", balanced_rows(1, "ca"))
    return root


def load_error(tmp_path: Path, rows_or_text, **kwargs) -> str:
    path = tmp_path / "bad.json"
    if isinstance(rows_or_text, str):
        path.write_text(rows_or_text, encoding="utf-8")
    else:
        write_json(path, rows_or_text)
    with pytest.raises(DataError) as err:
        load_samples(path, **kwargs)
    assert str(path) in str(err.value)
    return str(err.value)


# ---------------------------------------------------------------- loading and validation


def test_valid_rows_become_samples(tmp_path):
    rows = [row(0), row(1, "normal", "mexican", rationale_text="some words", original_id=17)]
    samples = load_samples(write_json(tmp_path / "d.json", rows))
    assert [s.id for s in samples] == ["id0", "17"]
    s = samples[1]
    assert (s.label, s.target_group, s.persona_tag, s.source, s.rationale) == ("normal", "mexican", "mexican", "toxigen", "some words")
    assert samples[0].rationale is None


def test_bom_and_crlf_files_load(tmp_path):
    text = json.dumps([row(0), row(1, "normal")], indent=2).replace("\n", "\r\n")
    path = tmp_path / "bom.json"
    path.write_bytes("\ufeff".encode("utf-8") + text.encode("utf-8"))
    assert [s.label for s in load_samples(path)] == ["hate", "normal"]


def test_malformed_json_names_line_and_column(tmp_path):
    msg = load_error(tmp_path, '[{"text": "a",\n "label_binary": }]')
    assert "malformed JSON at line 2" in msg


def test_json_lines_is_recognised(tmp_path):
    msg = load_error(tmp_path, "\n".join(json.dumps(r) for r in [row(0), row(1)]))
    assert "JSON Lines" in msg and "jq -s" in msg


def test_json_lines_advice_keeps_the_input(tmp_path):
    """``jq -s . F > F`` empties F before jq reads it: the advice writes a new file, then moves it."""
    path = tmp_path / "my data" / "unified_test.json"
    path.parent.mkdir()
    path.write_text("\n".join(json.dumps(r) for r in [row(0), row(1)]), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_samples(path)
    q = f"'{path}'"
    assert str(err.value).endswith(f"convert it with: jq -s . {q} > {q}.tmp && mv {q}.tmp {q}")


@pytest.mark.parametrize("content, expected", [
    ("", "the file is empty"),
    ("[]", "the list is empty"),
    ('{"rows": []}', "must be a JSON list"),
])
def test_empty_or_wrong_top_level(tmp_path, content, expected):
    assert expected in load_error(tmp_path, content)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps([row(0, text="caf\u00e9")], ensure_ascii=False).encode("utf-8").replace(b"\xc3\xa9", b"\xe9"))
    with pytest.raises(DataError, match="not UTF-8") as err:
        load_samples(path)
    assert "byte 0xE9 at line 1, column 15 (byte offset 14)" in str(err.value)
    assert "re-save the file as UTF-8" in str(err.value)


@pytest.mark.parametrize("change, field, problem", [
    ({"text": None}, "text", "is null"),
    ({"text": 5}, "text", "must be a string"),
    ({"label_binary": "offensive"}, "label_binary", "valid values: hate, normal"),
    ({"target_group_norm": "women"}, "target_group_norm", "valid values: lgbtq, mexican, middle_east"),
    ({"original_id": ""}, "original_id", "non-empty string or integer"),
    ({"rationale_text": 3}, "rationale_text", "string or null"),
    # an emoji cut in two by an exporter: no UTF-8 shard could hold it, the run would crash writing it
    ({"text": "cut \ud83d"}, "text", "the JSON escape \\ud83d at character 4 without its pair"),
    ({"rationale_text": "\ude00 x"}, "rationale_text", "the JSON escape \\ude00 at character 0"),
])
def test_bad_field_names_row_and_field(tmp_path, change, field, problem):
    msg = load_error(tmp_path, [row(0), row(1, **change)])
    assert "row 1" in msg and f"field '{field}'" in msg and problem in msg


@pytest.mark.parametrize("field", ["text", "label_binary", "target_group_norm", "persona_tag", "source_dataset", "original_id"])
def test_missing_required_field(tmp_path, field):
    bad = row(1)
    del bad[field]
    msg = load_error(tmp_path, [row(0), bad])
    assert "row 1" in msg and f"field '{field}'" in msg


def test_row_that_is_not_an_object(tmp_path):
    msg = load_error(tmp_path, [row(0), ["a", "list"]])
    assert "row 1: must be a JSON object" in msg


def test_duplicate_original_id_names_both_rows(tmp_path):
    msg = load_error(tmp_path, [row(0), row(1), row(2, original_id="id0")])
    assert "row 2" in msg and "duplicates row 0" in msg


def test_all_problems_in_one_error(tmp_path):
    rows = [row(i, label="bad") for i in range(8)]
    msg = load_error(tmp_path, rows)
    assert "8 invalid rows" in msg and "and 3 more" in msg


def test_label_and_group_case_is_normalised_with_a_note(tmp_path, caplog):
    path = write_json(tmp_path / "d.json", [row(0, "Hate", "LGBTQ"), row(1, " normal ")])
    samples = load_samples(path)
    assert [(s.label, s.target_group) for s in samples] == [("hate", "lgbtq"), ("normal", "lgbtq")]
    assert "3 label/target-group values" in caplog.text


def test_empty_text_is_skipped_by_default_with_one_warning_but_missing_text_is_an_error(tmp_path, caplog):
    path = write_json(tmp_path / "d.json", [row(0), row(1, text="  "), row(2, text="")])
    assert [s.id for s in load_samples(path)] == ["id0"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "2 rows with empty text skipped" in warnings[0].getMessage()
    assert "row 1 (id1), row 2 (id2)" in warnings[0].getMessage()
    missing = row(1)
    del missing["text"]
    assert "is missing" in load_error(tmp_path, [row(0), missing])


def test_empty_text_error_refuses_the_file_naming_the_row_and_the_setting(tmp_path):
    msg = load_error(tmp_path, [row(0), row(1, text="")], empty_text="error")
    assert "row 1 (original_id 'id1'): field 'text' is empty" in msg and "data.empty_text=skip" in msg


def test_select_counts_the_skipped_rows_before_the_draw(tmp_path):
    rows = [row(i, "hate" if i % 2 else "normal") for i in range(8)] + [row(8, text="")]
    write_json(tmp_path / "unified" / "unified_val.json", rows)
    sel = select(load_config(None, [f"data.dir={tmp_path}", "data.split=val", "data.max_samples=4"]).data)
    assert len(sel.samples) == 4 and sel.empty_text_skipped == ("row 8 (id8)",)
    assert sel.path.name == "unified_val.json"


# ---------------------------------------------------------------- data directory


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("HSD_DATA_DIR", raising=False)
    assert resolve_data_dir(None) == Path("data")
    monkeypatch.setenv("HSD_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir("elsewhere") == Path("elsewhere")


def test_missing_directory_or_split_says_make_data(tmp_path):
    with pytest.raises(DataError, match="make data"):
        load_split(tmp_path / "nope", "test")
    (tmp_path / "unified").mkdir()
    with pytest.raises(DataError, match="unified_test.json.*make data"):
        load_split(tmp_path, "test")
    with pytest.raises(DataError, match="valid splits: train, val, test"):
        load_split(tmp_path, "dev")


def test_select_split_subset_and_unknown_subset(tmp_path):
    root = make_data_dir(tmp_path)
    cfg = load_config(None, [f"data.dir={root}", "data.split=val"])
    assert len(select_samples(cfg.data)) == 12
    cfg = load_config(None, [f"data.dir={root}", "data.subset=small_set.json"])
    assert [s.id for s in select_samples(cfg.data)][:2] == ["ca0", "ca1"]
    assert available_subsets(root) == ["small_set"]
    cfg = load_config(None, [f"data.dir={root}", "data.subset=smal_set"])
    with pytest.raises(DataError, match="unknown subset 'smal_set'.*Available subsets: small_set"):
        select_samples(cfg.data)


# ---------------------------------------------------------------- stratified draws


def test_allocate_is_largest_remainder():
    # quotas 2.5, 1.5, 1.0 -> floors 2, 1, 1; one seat left; tie on .5 goes to the larger stratum
    assert allocate({("a", "x"): 5, ("b", "x"): 3, ("c", "x"): 2}, 5) == {("a", "x"): 3, ("b", "x"): 1, ("c", "x"): 1}
    sizes = {("hate", g): n for g, n in zip(TARGET_GROUPS, (455, 209, 306))}
    for n in (1, 7, 50, 100, 969):
        assert sum(allocate(sizes, n).values()) == n


def unequal_samples(tmp_path):
    rows, i = [], 0
    for (label, group), n in {("hate", "lgbtq"): 40, ("normal", "lgbtq"): 30, ("hate", "mexican"): 13,
                              ("normal", "mexican"): 9, ("hate", "middle_east"): 5, ("normal", "middle_east"): 3}.items():
        for _ in range(n):
            rows.append(row(i, label, group))
            i += 1
    return load_samples(write_json(tmp_path / "u.json", rows))


def test_stratified_sample_is_proportional_deterministic_and_ordered(tmp_path):
    samples = unequal_samples(tmp_path)  # 100 samples
    picked = stratified_sample(samples, 20, seed=7)
    counts = Counter((s.label, s.target_group) for s in picked)
    # 20% of 40, 30, 13, 9, 5, 3 = 8, 6, 2.6, 1.8, 1, 0.6 -> floors 8,6,2,1,1,0 (18) + the two largest remainders
    assert counts == {("hate", "lgbtq"): 8, ("normal", "lgbtq"): 6, ("hate", "mexican"): 3,
                      ("normal", "mexican"): 2, ("hate", "middle_east"): 1}
    assert picked == stratified_sample(samples, 20, seed=7)
    assert picked != stratified_sample(samples, 20, seed=8)
    index = {s.id: i for i, s in enumerate(samples)}
    assert [index[s.id] for s in picked] == sorted(index[s.id] for s in picked)
    assert picked != samples[:20]


def test_too_many_samples_is_an_error_with_counts(tmp_path):
    samples = unequal_samples(tmp_path)
    with pytest.raises(DataError, match="max_samples=101 but .* has only 100 samples"):
        stratified_sample(samples, 101, seed=0)
    assert stratified_sample(samples, 100, seed=0) == samples


def test_select_samples_max_samples(tmp_path):
    root = make_data_dir(tmp_path)
    cfg = load_config(None, [f"data.dir={root}", "data.max_samples=12", "data.seed=3"])
    picked = select_samples(cfg.data)
    assert Counter((s.label, s.target_group) for s in picked) == {k: 2 for k in
                                                                  [(l, g) for l in ("hate", "normal") for g in TARGET_GROUPS]}
    cfg = load_config(None, [f"data.dir={root}", "data.max_samples=25"])
    with pytest.raises(DataError, match="unified_test.json has only 24 samples"):
        select_samples(cfg.data)


# ---------------------------------------------------------------- the shipped dataset


@needs_shared
def test_shipped_splits_and_subsets_load():
    assert len(load_split(SHARED_DATA, "train")) == 3628
    assert len(load_split(SHARED_DATA, "test")) == 1009
    with pytest.raises(DataError, match="row 227 .*toxigen_193572.*field 'text' is empty"):
        load_split(SHARED_DATA, "val", empty_text="error")
    assert len(load_split(SHARED_DATA, "val")) == 513
    assert set(available_subsets(SHARED_DATA)) >= {"canned_50_quick", "canned_100_stratified"}


@needs_shared
def test_shipped_test_split_stratified_100():
    test = load_split(SHARED_DATA, "test")
    cfg = load_config(None, [f"data.dir={SHARED_DATA}", "data.max_samples=100"])
    picked = select_samples(cfg.data)
    full, part = Counter((s.label, s.target_group) for s in test), Counter((s.label, s.target_group) for s in picked)
    for key, n in full.items():
        assert abs(part[key] - 100 * n / len(test)) < 1


# ---------------------------------------------------------------- hsd data


def source_dir(tmp_path: Path) -> Path:
    return make_data_dir(tmp_path / "shared" / "data")


def test_hsd_data_links_relative_and_is_idempotent(tmp_path, capsys):
    src, dest = source_dir(tmp_path), tmp_path / "repo" / "data"
    assert cli.main(["data", "--source", str(src), "--dest", str(dest)]) == 0
    link = dest / "unified"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert len(load_split(dest, "train")) == 30
    assert cli.main(["data", "--source", str(src), "--dest", str(dest)]) == 0
    assert capsys.readouterr().out.count("already linked") == 2


def test_hsd_data_never_replaces_user_files(tmp_path, capsys):
    src, dest = source_dir(tmp_path), tmp_path / "data"
    mine = write_json(dest / "unified" / "unified_train.json", [row(0)])
    before = mine.read_bytes()
    assert cli.main(["data", "--source", str(src), "--dest", str(dest)]) == 1  # val/test still missing
    assert mine.read_bytes() == before and not (dest / "unified").is_symlink()
    assert "left as is" in capsys.readouterr().out
    assert (dest / "canned").is_symlink()


def test_hsd_data_replaces_only_a_broken_link(tmp_path):
    src, dest = source_dir(tmp_path), tmp_path / "data"
    dest.mkdir()
    (dest / "unified").symlink_to(tmp_path / "gone")
    assert cli.main(["data", "--source", str(src), "--dest", str(dest)]) == 0
    assert (dest / "unified").resolve() == (src / "unified").resolve()


def test_hsd_data_copy_keeps_differing_files(tmp_path, capsys):
    src, dest = source_dir(tmp_path), tmp_path / "data"
    write_json(dest / "unified" / "unified_val.json", [row(0)])
    assert cli.main(["data", "--source", str(src), "--dest", str(dest), "--copy"]) == 0
    assert len(load_samples(dest / "unified" / "unified_val.json")) == 1
    assert "1 differ and were kept: unified_val.json" in capsys.readouterr().out
    assert not (dest / "unified").is_symlink() and (dest / "unified" / "unified_test.json").is_file()


def test_hsd_data_without_source(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data_setup, "default_sources", lambda: [tmp_path / "no-shared" / "data"])
    dest = tmp_path / "data"
    assert cli.main(["data", "--dest", str(dest)]) == 1
    out = capsys.readouterr().out
    assert "place unified_train.json" in out and "HSD_DATA_DIR" in out
    make_data_dir(dest)
    assert cli.main(["data", "--dest", str(dest)]) == 0
    assert cli.main(["data", "--source", str(tmp_path / "nowhere"), "--dest", str(dest)]) == 2
    assert "no 'unified' directory" in capsys.readouterr().err
