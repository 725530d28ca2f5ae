"""Safe loading, checked on the source itself (an AST walk over hsd/ and jobs/) and on behaviour.

No loader that can run code from a file: ``yaml.safe_load`` only, ``torch.load`` only with
``weights_only=True``, no pickle / eval / exec; weights and adapters written as safetensors;
``trust_remote_code`` never hard-coded on; external commands as argument lists, never shell
strings; names that would escape the results root refused.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from hsd.config import ModelConfig, load_config
from hsd.errors import HsdError
from hsd.runs import RunError, check_name, experiment_dir, new_run_dir, run_dir

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.faults
SOURCES = sorted(p for d in ("hsd", "jobs") for p in (REPO / d).rglob("*.py"))
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}


def _calls():
    """(file:line, ast.Call, dotted callee name) for every call in the package source."""
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                yield f"{path.relative_to(REPO)}:{node.lineno}", node, _dotted(node.func)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _is_string_built(node) -> bool:
    """A command given as one string: a literal, an f-string, '+' / '%' on strings, .format or .join."""
    if isinstance(node, (ast.JoinedStr,)) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _is_string_built(node.left) or _is_string_built(node.right)
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in {"format", "join"}


def test_sources_found():
    assert len(SOURCES) > 30 and any(p.name == "validate.py" for p in SOURCES)


def test_yaml_safe_load_only():
    bad = [where for where, call, name in _calls()
           if name in {"yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load", "yaml.full_load_all"}
           and "Safe" not in _dotted(_kw(call, "Loader") or ast.Name("none"))]
    assert not bad, f"use yaml.safe_load: {bad}"


def test_torch_load_weights_only():
    bad = [where for where, call, name in _calls()
           if name.endswith("torch.load") and not _is_const(_kw(call, "weights_only"), True)]
    assert not bad, f"torch.load without weights_only=True: {bad}"


def test_no_pickle_eval_or_exec():
    bad = [f"{where} {name}" for where, call, name in _calls()
           if name in {"pickle.load", "pickle.loads", "cPickle.load", "dill.load", "joblib.load", "eval", "exec",
                       "marshal.loads", "shelve.open"}]
    assert not bad, f"loaders that can run code: {bad}"
    imports = [p.relative_to(REPO) for p in SOURCES
               if any(isinstance(n, (ast.Import, ast.ImportFrom)) and any(a.name in {"pickle", "dill", "cPickle"}
                                                                          for a in n.names)
                      for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))]
    assert not imports, f"pickle imported in {imports}"


def test_trust_remote_code_never_hard_coded_on():
    bad = [where for where, call, _ in _calls() if _is_const(_kw(call, "trust_remote_code"), True)]
    assert not bad, f"trust_remote_code=True hard-coded: {bad}"
    assert ModelConfig().trust_remote_code is False
    dict_literals = [p for p in SOURCES if '"trust_remote_code": True' in p.read_text(encoding="utf-8")]
    assert not dict_literals


def test_external_commands_are_argument_lists():
    bad = []
    for where, call, name in _calls():
        if name in {"os.system", "os.popen", "os.execl", "os.execlp", "os.spawnl", "commands.getoutput"}:
            bad.append(f"{where} {name}")
        elif name.split(".")[-1] in SUBPROCESS_CALLS and name.startswith(("subprocess.", "sp.")):
            if _is_const(_kw(call, "shell"), True):
                bad.append(f"{where} shell=True")
            if call.args and _is_string_built(call.args[0]):
                bad.append(f"{where} command built as a string")
    assert not bad, f"external commands must be argument lists without a shell: {bad}"


def test_weights_and_adapters_saved_as_safetensors():
    saves = [(where, call) for where, call, name in _calls() if name.endswith("save_pretrained")]
    assert saves
    assert not [w for w, c in saves if _is_const(_kw(c, "safe_serialization"), False)]
    for module in ("hsd/training/lora.py", "hsd/training/merge.py"):  # the adapter and the merged model
        explicit = [w for w, c in saves if w.startswith(module) and _is_const(_kw(c, "safe_serialization"), True)]
        if (REPO / module).exists():
            assert explicit, f"{module} must save with safe_serialization=True"
    torch_saves = [where for where, _, name in _calls() if name.endswith("torch.save")]
    assert not torch_saves, f"weights must be written as safetensors, not torch.save (pickle): {torch_saves}"


@pytest.mark.integration
def test_tiny_model_has_safetensors_only(tiny_model_dir):
    files = {p.suffix for p in tiny_model_dir.iterdir()}
    assert ".safetensors" in files and not files & {".bin", ".pt", ".pth", ".pkl"}


@pytest.mark.parametrize("name", ["..", ".", "../x", "../../etc", "a/b", "/etc", "x/../../y", "", " lead", "a b",
                                  ".hidden", "~root", "x\n", "a\\b", "é", "x" * 200])
def test_names_that_escape_or_are_odd_are_refused(name, tmp_path):
    with pytest.raises(RunError, match="not allowed"):
        check_name(name, "experiment name")
    with pytest.raises(RunError):
        experiment_dir(tmp_path, name)
    with pytest.raises(RunError):
        run_dir(tmp_path, "exp", name)
    with pytest.raises(RunError):
        new_run_dir(tmp_path, "exp", name)
    assert not list(tmp_path.iterdir()) or [p.name for p in tmp_path.iterdir()] == ["exp"]


def test_symlinked_experiment_outside_results_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "exp").symlink_to(outside)
    with pytest.raises(RunError, match="escape"):
        experiment_dir(tmp_path / "results", "exp")


def test_config_with_python_tag_is_refused_and_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text("experiment: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(HsdError, match="not valid YAML"):
        load_config(path)
    assert not (tmp_path / "pwned").exists()


def test_legacy_template_json_is_data_only(tmp_path):
    """A legacy template is JSON (no code); a YAML template with a Python tag is refused."""
    from hsd.errors import TemplateError
    from hsd.prompts import load_template

    path = tmp_path / "t.yaml"
    path.write_text("name: !!python/name:os.system\n")
    with pytest.raises(TemplateError, match="not valid YAML"):
        load_template(str(path))
    legacy = tmp_path / "t.json"
    legacy.write_text(json.dumps({"strategies": {"s": {"system_prompt": "x", "user_template": "{text}",
                                                       "parameters": {"max_tokens": 8, "temperature": 0,
                                                                      "top_p": 1}}}}))
    assert load_template(str(legacy), "s").name == "s"
