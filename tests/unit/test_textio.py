"""hsd.textio: torn tails (cut inside 1- to 4-byte characters), bad bytes, CRLF, BOM, empty files."""

from __future__ import annotations

import json

import pytest

from hsd import textio
from hsd.errors import DataError

ROWS = [{"id": 1, "text": "plain"}, {"id": 2, "text": "caf\u00e9 \u2014 \U0001f600 \u0645\u0631\u062d\u0628\u0627"}]
GOOD = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS).encode()
LAST = json.dumps({"id": 3, "text": "\u00e9\u2014\U0001f600"}, ensure_ascii=False).encode()


def cut_inside(char: str, keep: int) -> bytes:
    """LAST cut after ``keep`` bytes of ``char``'s UTF-8 encoding: a write killed mid-character."""
    return LAST[: LAST.index(char.encode()) + keep]


# (case, bytes, ids read, bytes a writer keeps)
TAILS = [
    ("ascii torn tail", GOOD + LAST[:5], [1, 2], len(GOOD)),
    ("torn inside a 2-byte character", GOOD + cut_inside("\u00e9", 1), [1, 2], len(GOOD)),
    ("torn inside a 3-byte character", GOOD + cut_inside("\u2014", 2), [1, 2], len(GOOD)),
    ("torn inside a 4-byte character", GOOD + cut_inside("\U0001f600", 1), [1, 2], len(GOOD)),
    ("torn after 3 of 4 bytes", GOOD + cut_inside("\U0001f600", 3), [1, 2], len(GOOD)),
    ("complete JSON without its newline", GOOD + LAST, [1, 2], len(GOOD)),
    ("last line ends but is not JSON", GOOD + LAST[:-3] + b"\n", [1, 2], len(GOOD)),
    ("last line ends but is not UTF-8", GOOD + cut_inside("\u2014", 1) + b"\n", [1, 2], len(GOOD)),
    ("the only line is torn", cut_inside("\U0001f600", 2), [], 0),
    ("complete file", GOOD + LAST + b"\n", [1, 2, 3], len(GOOD + LAST) + 1),
    ("CRLF line ends", GOOD.replace(b"\n", b"\r\n"), [1, 2], len(GOOD) + 2),
    ("BOM at the start", textio.BOM + GOOD, [1, 2], len(GOOD) + 3),
    ("blank lines", b"\n" + GOOD.replace(b"\n", b"\n\n"), [1, 2], len(GOOD) + 3),
    ("empty file", b"", [], 0),
]


@pytest.mark.parametrize("data,ids,keep", [pytest.param(d, i, k, id=c) for c, d, i, k in TAILS])
def test_torn_last_line_is_skipped_and_cut_at_its_newline(data, ids, keep):
    assert [obj["id"] for _, obj in textio.json_lines(data, "f.jsonl")] == ids
    assert textio.complete_length(data) == keep
    assert list(textio.json_lines(data[:keep], "f.jsonl")) == list(textio.json_lines(data, "f.jsonl"))


def test_a_line_separator_inside_a_string_is_no_line_end():
    data = json.dumps({"id": 1, "text": "a\u2028b\x85c"}, ensure_ascii=False).encode() + b"\n"
    assert [obj["text"] for _, obj in textio.json_lines(data, "f")] == ["a\u2028b\x85c"]


# (case, bytes, words of the error); the damage sits on line 2 of 3: no kill leaves it there
MIDDLE = [
    ("bad byte mid-file", GOOD[:34] + b"\xe9" + GOOD[34:] + LAST + b"\n",
     ("line 2, column 8 (byte offset 34)", "byte 0xE9", "delete line 2")),
    ("torn character mid-file", GOOD + cut_inside("\u2014", 1) + b"\n" + LAST + b"\n",
     ("line 3, column 21", "byte 0xE2", "delete line 3")),
    ("unparsable line mid-file", GOOD + b'{"id": \n' + LAST + b"\n", ("line 3 is not valid JSON", "delete line 3")),
]


@pytest.mark.parametrize("data,words", [pytest.param(d, w, id=c) for c, d, w in MIDDLE])
def test_damage_before_the_last_line_is_an_error_naming_file_and_line(data, words):
    with pytest.raises(textio.TextError) as info:
        list(textio.json_lines(data, "my run/rank0.jsonl"))
    msg = str(info.value)
    assert msg.startswith("my run/rank0.jsonl: ")
    for word in words:
        assert word in msg, msg
    assert "cp 'my run/rank0.jsonl' 'my run/rank0.jsonl'.bak" in msg  # a copy first, quoted for the shell


# (case, bytes, text) of whole files: configs, datasets, templates, CSVs
WHOLE = [
    ("BOM at the start of a config", textio.BOM + b"experiment: x\n", "experiment: x\n"),
    ("CRLF kept", b"a: 1\r\nb: 2\r\n", "a: 1\r\nb: 2\r\n"),
    ("only the first BOM dropped", textio.BOM * 2 + b"a", "\ufeffa"),
    ("multi-byte text", "caf\u00e9 \U0001f600\n".encode(), "caf\u00e9 \U0001f600\n"),
    ("empty file", b"", ""),
]


@pytest.mark.parametrize("data,text", [pytest.param(d, t, id=c) for c, d, t in WHOLE])
def test_decode_whole_files(tmp_path, data, text):
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    assert textio.read_text(path) == text == textio.decode(data, path)


@pytest.mark.parametrize("data,words", [
    pytest.param(b"experiment: caf\xe9\n", ("line 1, column 16 (byte offset 15)", "after 'experiment: caf'"), id="latin-1"),
    pytest.param(textio.BOM + b"a: 1\nb: \xff\n", ("byte 0xFF at line 2, column 4 (byte offset 11)",), id="after a BOM"),
    pytest.param("a: \u2014\n".encode()[:-2], ("byte 0xE2 at line 1, column 4",), id="a whole file cut mid-character"),
])
def test_a_bad_byte_names_file_line_column_and_offset(tmp_path, data, words):
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:  # the caller's error class: its handlers still catch it
        textio.read_text(path, error=DataError)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not UTF-8 text: ")
    for word in words:
        assert word in msg, msg
    assert path.read_bytes() == data


def test_no_fix_truncates_its_input():
    """``cmd F > F`` empties F before cmd reads it: every fix writes a new file, then moves it."""
    enc = textio.fix_text(textio.FIX_ENCODING, "d/x.json")
    assert "> d/x.json.utf8 && mv d/x.json.utf8 d/x.json" in enc and "> d/x.json " not in enc + " "
    line = textio.fix_text(textio.FIX_LINE, "d/x.jsonl", 7)
    assert ">" not in line and "cp d/x.jsonl d/x.jsonl.bak" in line and "sed -i '7d' d/x.jsonl" in line


def test_lines_reads_a_torn_last_line_up_to_the_cut_character():
    data = GOOD + cut_inside("\U0001f600", 2)
    got = list(textio.lines(data, "f"))
    assert [(x.number, x.torn) for x in got] == [(1, False), (2, False), (3, True)]
    assert got[2].text == '{"id": 3, "text": "\u00e9\u2014' and got[2].offset == len(GOOD)
    assert [x.torn for x in textio.lines(GOOD + LAST, "f")] == [False, False, True]
