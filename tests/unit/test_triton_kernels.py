"""hsd's hand-written Triton kernels (:mod:`hsd.gptoss.triton_experts`, :mod:`hsd.gptoss.triton_attention`)
against the eager code they replace, in Triton's interpreter on CPU; and the fusion family's
fall-backs around them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsd.gptoss.fusion import Fusion


def test_kernels_equal_the_eager_stages_in_the_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("_triton_check.py"))],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_a_missing_kernel_module_means_eager_with_one_warning(caplog):
    family = Fusion("test family", handwritten="hsd.no_such_kernels")
    family.enabled = False
    with caplog.at_level(logging.WARNING, logger="hsd.gptoss.fusion"):
        assert family("gate", lambda x: x + 1, True, 1) == 2
        assert family("combine", lambda x: x * 3, True, 2) == 6
    assert len(caplog.records) == 1 and "hand-written kernels unavailable" in caplog.text
    assert family.handwritten is None


def test_a_failing_kernel_means_eager_and_the_callers_errors_pass_through(caplog, tmp_path, monkeypatch):
    (tmp_path / "broken_kernels.py").write_text("def gate(x):\n    raise RuntimeError('no compile')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    family = Fusion("test family", handwritten="broken_kernels")
    family.enabled = False
    with caplog.at_level(logging.WARNING, logger="hsd.gptoss.fusion"):
        assert family("gate", lambda x: x + 1, True, 1) == 2
        assert family("gate", lambda x: x + 1, True, 5) == 6  # eager from then on, no second warning

    def caller_error(x):
        raise KeyError("the caller's own")

    with pytest.raises(KeyError):  # a stage with no kernel: its error is never swallowed
        family("combine", caller_error, True, 1)
    assert len(caplog.records) == 1 and "gate kernel failed" in caplog.text


def test_on_cpu_or_compiled_no_kernel_is_tried():
    family = Fusion("test family", handwritten="hsd.no_such_kernels")
    family.enabled = False
    assert family("gate", lambda x: -x, False, 1) == -1  # CPU: eager
    assert family._kernels == {} and family.handwritten
