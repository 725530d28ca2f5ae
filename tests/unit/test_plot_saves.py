"""Plots drawn by forked processes (hsd.reporting.plots.forked_saves, used by the process that writes a
baseline's reports after its run) are the very files drawn in-process, and a failed fork is redrawn here."""

from __future__ import annotations

import os

import pytest

from hsd.reporting import plots

MATRIX = {"hate": {"hate": 40, "normal": 7, "unknown": 3}, "normal": {"hate": 9, "normal": 38, "unknown": 1}}
ROWS = [("run", {"f1": {"estimate": 0.7, "low": 0.62, "high": 0.77}}),
        ("tfidf_logreg", {"f1": {"estimate": 0.68, "low": 0.6, "high": 0.75}})]


def _draw_all(out):
    return [plots.confusion(MATRIX, "confusion", out / "confusion.png"),
            plots.forest(ROWS, ["f1"], out / "headline.png", title="headline")]


def test_forked_saves_write_the_same_files_and_wait_for_them(tmp_path):
    here = _draw_all(tmp_path / "here")
    with plots.forked_saves():
        forked = _draw_all(tmp_path / "forked")
        plots.finish_saves()  # what write_report calls before the HTML embeds the files
        assert all(p.is_file() for p in forked)
    assert [p.read_bytes() for p in forked] == [p.read_bytes() for p in here]
    assert not list((tmp_path / "forked").glob(".*.tmp.png"))


def test_a_forked_save_that_failed_is_drawn_again_here(tmp_path, monkeypatch):
    parent, draw = os.getpid(), plots._draw

    def fails_in_the_copy(fig, path):
        if os.getpid() != parent:
            raise RuntimeError("the forked copy could not draw")
        draw(fig, path)

    monkeypatch.setattr(plots, "_draw", fails_in_the_copy)
    here = _draw_all(tmp_path / "here")
    with plots.forked_saves():
        forked = _draw_all(tmp_path / "forked")
    assert [p.read_bytes() for p in forked] == [p.read_bytes() for p in here]


def test_an_error_drawing_here_after_a_failed_fork_is_raised(tmp_path, monkeypatch):
    def always_fails(fig, path):
        raise RuntimeError("cannot draw")

    monkeypatch.setattr(plots, "_draw", always_fails)
    with pytest.raises(RuntimeError, match="cannot draw"):
        with plots.forked_saves():
            _draw_all(tmp_path)
    assert plots._FORKED is None  # left as it was: a later plot is drawn in-process again
