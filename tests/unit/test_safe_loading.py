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


def _calls(sources: dict[str, str]):
    """(file:line, ast.Call, dotted callee name) for every call in ``{name: source text}``."""
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text, filename=name)):
            if isinstance(node, ast.Call):
                yield f"{name}:{node.lineno}", node, _dotted(node.func)


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
    if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _is_string_built(node.left) or _is_string_built(node.right)
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in {"format", "join"}


# Each rule: source texts -> findings ("file:line what"). Empty on the package; non-empty on BAD.
def yaml_unsafe(sources):
    return [w for w, c, n in _calls(sources)
            if n in {"yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load", "yaml.full_load_all"}
            and "Safe" not in _dotted(_kw(c, "Loader") or ast.Name("none"))]


def torch_load_unsafe(sources):
    return [w for w, c, n in _calls(sources) if n.endswith("torch.load") and not _is_const(_kw(c, "weights_only"), True)]


def code_loaders(sources):
    calls = [f"{w} {n}" for w, c, n in _calls(sources)
             if n in {"pickle.load", "pickle.loads", "cPickle.load", "dill.load", "joblib.load", "eval", "exec",
                      "marshal.loads", "shelve.open"}]
    imports = [f"{name} imports {a.name}" for name, text in sources.items() for node in ast.walk(ast.parse(text))
               if isinstance(node, (ast.Import, ast.ImportFrom))
               for a in node.names if a.name in {"pickle", "dill", "cPickle", "marshal"}]
    return calls + imports


def remote_code_on(sources):
    calls = [w for w, c, _ in _calls(sources) if _is_const(_kw(c, "trust_remote_code"), True)]
    return calls + [f"{n} dict literal" for n, text in sources.items() if '"trust_remote_code": True' in text]


def shell_commands(sources):
    bad = []
    for w, c, n in _calls(sources):
        if n in {"os.system", "os.popen", "os.execl", "os.execlp", "os.spawnl", "commands.getoutput"}:
            bad.append(f"{w} {n}")
        elif n.split(".")[-1] in SUBPROCESS_CALLS and n.startswith("subprocess."):
            if _is_const(_kw(c, "shell"), True):
                bad.append(f"{w} shell=True")
            if c.args and _is_string_built(c.args[0]):
                bad.append(f"{w} command built as a string")
    return bad


def unsafe_weights(sources):
    bad = [w for w, c, n in _calls(sources)
           if n.endswith("save_pretrained") and _is_const(_kw(c, "safe_serialization"), False)]
    return bad + [f"{w} torch.save (pickle)" for w, _, n in _calls(sources) if n.endswith("torch.save")]


RULES = (yaml_unsafe, torch_load_unsafe, code_loaders, remote_code_on, shell_commands, unsafe_weights)
PACKAGE = {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in SOURCES}
BAD = {"bad.py": """
import pickle, subprocess, os, yaml, torch
yaml.load(open(path))
torch.load(path)
pickle.loads(blob)
AutoModel.from_pretrained(name, trust_remote_code=True)
subprocess.run(f"sbatch {cfg.executor.partition}", shell=True)
subprocess.check_output("git rev-parse " + ref)
os.system(cmd)
model.save_pretrained(out, safe_serialization=False)
torch.save(model.state_dict(), out)
"""}


def test_sources_found():
    assert len(PACKAGE) > 30 and "hsd/commands/validate.py" in PACKAGE


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_package_source_is_safe(rule):
    assert rule(PACKAGE) == [], f"{rule.__name__}: {rule(PACKAGE)}"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_rule_catches_the_unsafe_form(rule):
    assert rule(BAD), f"{rule.__name__} found nothing in a snippet that breaks it"


def test_trust_remote_code_off_by_default():
    assert ModelConfig().trust_remote_code is False


def test_adapter_and_merged_model_saved_as_safetensors():
    saves = [(w, c) for w, c, n in _calls(PACKAGE) if n.endswith("save_pretrained")]
    for module in ("hsd/training/lora.py", "hsd/training/merge.py"):
        if module in PACKAGE:
            assert [w for w, c in saves if w.startswith(module) and _is_const(_kw(c, "safe_serialization"), True)], \
                f"{module} must save with safe_serialization=True"


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
