"""The backend registry: lazy names, unknown names listed, no engine imported by hsd.inference."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hsd.errors import HsdError
from hsd.inference import BACKENDS, get_backend
from hsd.inference.base import Backend


def test_every_registered_backend_resolves_to_a_backend_class():
    for name in BACKENDS:
        cls = get_backend(name)
        assert isinstance(cls, type) and issubclass(cls, Backend), name


def test_hf_is_registered():
    assert get_backend("hf").__name__ == "HFBackend"


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(HsdError) as err:
        get_backend("vllmm")
    msg = str(err.value)
    assert "vllmm" in msg and "inference.backend" in msg
    for name in BACKENDS:
        assert name in msg


def test_importing_the_registry_imports_no_engine():
    code = "import sys, hsd.inference, hsd.recipes.validate; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
