"""README's Reliability tables are generated from the tests (tests/reliability_table.py): no drift."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from reliability_table import README, current_block, render  # noqa: E402
from _faults import FAULTS  # noqa: E402  (tests/faults is on sys.path via reliability_table)

pytestmark = pytest.mark.faults


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_readme_table_matches_the_tests():
    assert current_block(README.read_text(encoding="utf-8")) == render(), (
        "README.md's Reliability tables differ from the tests; regenerate them with: "
        ".venv/bin/python tests/reliability_table.py --write")


def test_faults_list_names_real_tests_and_every_fault_test():
    listed = {f.test for f in FAULTS}
    for entry in listed:
        file, func = entry.split("::")
        assert func in _test_functions(TESTS / file), f"{entry} is in FAULTS but is not a test"
    for path in sorted((TESTS / "faults").glob("test_*.py")):
        for func in _test_functions(path):
            assert f"faults/{path.name}::{func}" in listed, f"{path.name}::{func} is missing from FAULTS (README table)"
