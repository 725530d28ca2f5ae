"""Config: strict keys and types, dotted overrides, round trip of the resolved config."""

from pathlib import Path

import pytest

from hsd.config import Config, ConfigError, dump_config, from_dict, load_config, replace


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_load_without_a_file():
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    assert cfg.inference.backend == "hf"
    assert cfg.data.max_samples == "all"


def test_file_values_and_nested_sections(tmp_path):
    cfg = load_config(write(tmp_path, "experiment: e1\ninference:\n  batch_size: 3\ntrain:\n  lora:\n    r: 8\n"))
    assert cfg.experiment == "e1"
    assert cfg.inference.batch_size == 3
    assert cfg.train.lora.r == 8


def test_unknown_key_names_key_file_and_valid_keys(tmp_path):
    path = write(tmp_path, "inference:\n  batchsize: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "inference.batchsize" in msg and str(path) in msg and "batch_size" in msg


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'inferance'"):
        load_config(write(tmp_path, "inferance: {}\n"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("inference:\n  batch_size: eight\n", "inference.batch_size"),
        ("inference:\n  batch_size: true\n", "inference.batch_size"),
        ("inference:\n  batch_size: -4\n", "inference.batch_size"),
        ("inference:\n  mode: sample\n", "inference.mode"),
        ("data:\n  max_samples: some\n", "data.max_samples"),
        ("data:\n  max_samples: 0\n", "data.max_samples"),
        ("model: gpt\n", "model"),
        ("train:\n  lora:\n    target_modules: q_proj\n", "train.lora.target_modules"),
    ],
)
def test_wrong_types_are_errors(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_dotted_overrides_are_typed_and_checked(tmp_path):
    path = write(tmp_path, "inference:\n  batch_size: 3\n")
    cfg = load_config(path, ["inference.batch_size=8", "data.max_samples=20", "model.adapter=/x"])
    assert cfg.inference.batch_size == 8 and cfg.data.max_samples == 20 and cfg.model.adapter == "/x"
    with pytest.raises(ConfigError, match="inference.batch_size"):
        load_config(path, ["inference.batch_size=lots"])
    with pytest.raises(ConfigError, match="unknown key 'inference.nope'"):
        load_config(path, ["inference.nope=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, ["inference.batch_size"])


def test_round_trip_of_resolved_config(tmp_path):
    cfg = load_config(None, ["train.lora.target_parameters=[mlp.experts.gate_up_proj]", "executor.extra_sbatch={constraint: a100}"])
    again = load_config(write(tmp_path, dump_config(cfg)))
    assert again == cfg


def test_replace_with_dotted_keys():
    cfg = replace(from_dict({}), **{"inference.batch_size": 4, "prompt.template": "simple"})
    assert cfg.inference.batch_size == 4 and cfg.prompt.template == "simple"


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_frozen():
    cfg = load_config(None)
    with pytest.raises(Exception):
        cfg.experiment = "x"  # type: ignore[misc]


@pytest.mark.parametrize("text, key, lines", [
    ("experiment: a\ninference:\n  batch_size: 4\n  mode: score\n  batch_size: 8\n", "batch_size", (3, 5)),
    ("experiment: a\ntrain: {}\nexperiment: b\n", "experiment", (1, 3)),
    ("sweep:\n  lora:\n    - {r: 8, r: 16}\n", "r", (3, 3)),
])
def test_a_key_set_twice_is_one_error_naming_the_key_and_both_lines(tmp_path, text, key, lines):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"{path}: key '{key}' is set twice in one mapping, on line {lines[0]} "
                              f"and line {lines[1]}; keep one of them")


def test_empty_text_defaults_to_skip_and_the_old_key_still_reads(tmp_path):
    assert load_config(None).data.empty_text == "skip"
    assert load_config(None, ["data.empty_text=error"]).data.empty_text == "error"
    # drop_empty_text: hsd wrote `false` (its old default) into every resolved config.yaml
    assert load_config(None, ["data.drop_empty_text=false"]).data.empty_text == "skip"
    assert load_config(None, ["data.drop_empty_text=false", "data.empty_text=error"]).data.empty_text == "error"
    assert load_config(None, ["data.drop_empty_text=true"]).data.empty_text == "skip"
    with pytest.raises(ConfigError, match="contradicts 'data.empty_text: error'; keep only 'data.empty_text'"):
        load_config(None, ["data.drop_empty_text=true", "data.empty_text=error"])
    with pytest.raises(ConfigError, match="'data.empty_text' must be 'skip' | 'error'"):
        load_config(None, ["data.empty_text=drop"])
    assert "drop_empty_text" not in dump_config(load_config(None, ["data.drop_empty_text=true"]))


def test_configs_of_old_runs_still_load():
    fixtures = Path(__file__).parents[1] / "fixtures" / "runs_3bc6d1b"
    for path in sorted(fixtures.glob("*/config.yaml")):
        assert "drop_empty_text: false" in path.read_text()
        assert load_config(path).data.empty_text == "skip", path
