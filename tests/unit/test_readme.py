"""The README stays true: every config key and every make target is documented."""

import re
from pathlib import Path

from hsd.config import load_config, to_dict

ROOT = Path(__file__).resolve().parents[2]


def _leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in tree.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and name not in {"extra_sbatch"}:
            keys |= _leaf_keys(value, path + ".")
        else:
            keys.add(path)
    return keys


def _documented_keys() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first_cell = line.split("|")[1]
        names = re.findall(r"`([^`]+)`", first_cell)
        base = names[0]
        keys.add(base)
        parent = base.rsplit(".", 1)[0] + "." if "." in base else ""
        keys |= {parent + n for n in names[1:]}
    return keys


def test_every_config_key_is_in_the_reference():
    missing = _leaf_keys(to_dict(load_config(None))) - _documented_keys()
    assert not missing, f"README 'Configuration reference' lacks: {sorted(missing)}"


def test_no_documented_key_is_stale():
    stale = _documented_keys() - _leaf_keys(to_dict(load_config(None)))
    assert not stale, f"README documents keys that do not exist: {sorted(stale)}"


def test_every_make_target_is_documented():
    makefile = (ROOT / "Makefile").read_text()
    targets = re.findall(r"^([a-z-]+):.*## ", makefile, flags=re.M)
    readme = (ROOT / "README.md").read_text()
    missing = [t for t in targets if f"`make {t}`" not in readme and f"`make {t}`".replace(" ", " ") not in readme
               and not re.search(rf"`make [a-z-]+` / `make {t}`", readme)]
    assert not missing, f"README 'Make targets' lacks: {missing}"


def test_first_two_commands_are_demo_and_test():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands[:2] == ["make demo", "make test"]
