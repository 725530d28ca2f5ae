"""Reading the text files hsd is given or wrote: UTF-8 only, and every failure names the place.

Two kinds of file, two rules:

* A whole file (a config, a dataset, a template, a CSV) is UTF-8; one leading BOM is dropped and
  line ends are left as they are. A bad byte is an error naming the file, line, column and byte
  offset, with a fix that writes a new file before replacing the old one (never ``cmd F > F``,
  which empties ``F`` before ``cmd`` reads it).
* A JSON Lines file hsd appends to (shards, logs) may end in a torn write: a process killed
  mid-``write`` leaves a last line without its newline, often cut inside a multi-byte character
  (``ensure_ascii=False``). The last line is *torn* when it has no newline, is not UTF-8 or is
  not JSON; it is skipped, the caller redoes it, and :func:`complete_length` says where to cut
  it off. The same faults on an earlier line are damage no kill can cause: an error naming the
  file and line, because skipping it would silently lose a record.

Only the standard library and :mod:`hsd.errors`: everything that reads a file may import this.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hsd.errors import HsdError

BOM = b"\xef\xbb\xbf"
# The fixes, formatted with the shell-quoted {path} and the 1-based {line}.
FIX_ENCODING = ("re-save the file as UTF-8 (a file written in Windows-1252: iconv -f cp1252 -t utf-8 {path} "
                "> {path}.utf8 && mv {path}.utf8 {path})")
FIX_LINE = ("keep a copy of the file (cp {path} {path}.bak), delete line {line} (sed -i '{line}d' {path}) "
            "and run the command again")


class TextError(HsdError):
    """A file is not UTF-8 text, or a line before the last of a JSON Lines file is unreadable."""


@dataclass(frozen=True)
class Line:
    number: int  # 1-based
    offset: int  # byte offset of the line's first byte in the file
    text: str  # without its "\n"; a torn last line holds only its decodable start
    torn: bool  # the last line, cut off: no newline, or not UTF-8


def fix_text(template: str, path: str | Path, line: int = 0) -> str:
    """``template`` with ``{path}`` (shell-quoted) and ``{line}`` filled in; other braces are kept."""
    return template.replace("{path}", shlex.quote(str(path))).replace("{line}", str(line))


def where(data: bytes, offset: int) -> tuple[int, int]:
    """(line, column) of byte ``offset``, both 1-based; the column counts characters."""
    start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, len(data[start:offset].decode("utf-8", "replace")) + 1


def bad_byte(path: str | Path, data: bytes, offset: int) -> str:
    """``<path>: not UTF-8 text: byte 0xE9 at line 3, column 7 (byte offset 41), after '...'``."""
    line, col = where(data, offset)
    start = max(data.rfind(b"\n", 0, offset) + 1, offset - 30)
    before = data[start:offset].decode("utf-8", "replace")
    return (f"{path}: not UTF-8 text: byte 0x{data[offset]:02X} at line {line}, column {col} "
            f"(byte offset {offset})" + (f", after {before!r}" if before else ""))


def decode(data: bytes, path: str | Path, *, error: type[HsdError] = TextError, fix: str = FIX_ENCODING) -> str:
    """``data`` (the bytes of ``path``) as text: UTF-8, one leading BOM dropped, line ends kept."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{bad_byte(path, data, exc.start)}; {fix_text(fix, path)}") from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(path: str | Path, *, error: type[HsdError] = TextError, fix: str = FIX_ENCODING) -> str:
    """The file as text (see :func:`decode`); a missing file is the caller's to report."""
    return decode(Path(path).read_bytes(), path, error=error, fix=fix)


def lines(data: bytes, path: str | Path, *, error: type[HsdError] = TextError, fix: str = FIX_LINE) -> Iterator[Line]:
    """Every line of ``data``, split on "\\n" only (U+2028 and friends may sit inside a JSON string).

    The last line is ``torn`` when it has no newline or is not UTF-8 (then ``text`` is its
    decodable start); a line before it that is not UTF-8 is an error naming file and line."""
    parts = data.split(b"\n")
    if parts[-1] == b"":  # the newline ends the last line; nothing follows it
        parts.pop()
    offset = 0
    for number, raw in enumerate(parts, start=1):
        last = number == len(parts)
        torn = last and offset + len(raw) == len(data)  # no newline after it
        body = raw[len(BOM):] if number == 1 and raw.startswith(BOM) else raw
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            if not last:
                at = offset + len(raw) - len(body) + exc.start
                raise error(f"{bad_byte(path, data, at)}; {fix_text(fix, path, number)}") from None
            text, torn = body[: exc.start].decode("utf-8"), True
        yield Line(number, offset, text, torn)
        offset += len(raw) + 1


def complete_length(data: bytes) -> int:
    """Bytes of ``data`` before its torn last line (``len(data)`` when it has none): where a writer
    that appends cuts the file, so that the next record starts a line of its own."""
    if not data.endswith(b"\n"):
        return data.rfind(b"\n") + 1  # 0 for an empty file or a single torn line
    start = data.rfind(b"\n", 0, len(data) - 1) + 1  # the last line's first byte
    last = data[start:-1]
    if start == 0 and last.startswith(BOM):
        last = last[len(BOM):]
    try:
        if last.strip():
            json.loads(last.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: JSONDecodeError
        return start
    return len(data)


def json_lines(data: bytes, path: str | Path, *, error: type[HsdError] = TextError,
               fix: str = FIX_LINE) -> Iterator[tuple[int, Any]]:
    """(line number, value) of every complete JSON line of ``data`` (the bytes of ``path``).

    Blank lines and a torn last line (see :func:`complete_length`) are skipped; an earlier line
    that is not UTF-8 or not JSON is an error naming file and line, with ``fix``."""
    for line in lines(data[: complete_length(data)], path, error=error, fix=fix):
        if not line.text.strip():
            continue
        try:
            value = json.loads(line.text)
        except (ValueError, RecursionError) as exc:
            why = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise error(f"{path}: line {line.number} is not valid JSON ({why}; the line starts at byte offset "
                        f"{line.offset}); {fix_text(fix, path, line.number)}") from None
        yield line.number, value
