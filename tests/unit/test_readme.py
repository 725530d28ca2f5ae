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


def _migration_keys() -> list[str]:
    """Config keys named in the hsd column of "Coming from the old pipeline" (``section.key``,
    ``section.key: value``, ``section.key=value``, or a top-level key)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Coming from the old pipeline", 1)[1].split("\n## ", 1)[0]
    sections = set(to_dict(load_config(None)))
    keys = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("|---"):
            continue
        for token in re.findall(r"`([^`]+)`", line.split("|")[2]):
            name = re.split(r"[\s:=]", token, maxsplit=1)[0]
            if "/" not in name and name.split(".")[0] in sections:
                keys.append(name)
    return keys


def test_the_migration_tables_name_only_config_keys_that_exist():
    cfg = to_dict(load_config(None))
    leaves = _leaf_keys(cfg)
    keys = _migration_keys()
    assert len(keys) >= 30, keys  # the tables were read (a changed layout must not make this pass vacuously)
    missing = sorted({k for k in keys if k not in leaves and not any(leaf.startswith(k + ".") for leaf in leaves)})
    assert not missing, f"'Coming from the old pipeline' names config keys that do not exist: {missing}"


def test_the_migration_section_names_every_old_flag_the_issue_lists():
    section = (ROOT / "README.md").read_text().split("## Coming from the old pipeline", 1)[1].split("\n## ", 1)[0]
    for flag in ("--data_file", "--max_samples", "--strategy", "--lora_r", "--output_dir", "--prompt_template",
                 "--model_name", "--batch_size", "--learning_rate", "--num_train_epochs"):
        assert f"`{flag}" in section, flag
