"""gpt-oss's tokenizer.json parsed once per load (hsd.models.fast_tokenizer), the same tokenizer
as transformers' own ``from_pretrained`` builds."""

from __future__ import annotations

import json
import sys

from hsd.config import ModelConfig
from hsd.models import fast_tokenizer
from hsd.models.loader import load_tokenizer

TEXT = "<|start|>user<|message|>Ünïcode, emoji 🙂 and a slur-free sentence: is this hate?<|end|><|start|>assistant"


BUILDS = ("Tokenizer.from_file", "Tokenizer.from_str", "Tokenizer.__setstate__")  # a parse of the whole JSON


def _parses(load):
    """(result, how many times a tokenizers.Tokenizer was built from JSON text while ``load`` ran)."""
    count = [0]

    def profile(frame, event, arg):
        if event == "c_call" and getattr(arg, "__qualname__", None) in BUILDS:
            count[0] += 1

    sys.setprofile(profile)
    try:
        out = load()
    finally:
        sys.setprofile(None)
    return out, count[0]


def test_the_tokenizer_json_is_parsed_once_and_builds_transformers_own_tokenizer(tiny_model_dir, tmp_path):
    from transformers import PreTrainedTokenizerFast

    ours, parses = _parses(lambda: fast_tokenizer.from_pretrained(tiny_model_dir))
    theirs = PreTrainedTokenizerFast.from_pretrained(str(tiny_model_dir))
    assert parses == 1
    assert type(ours) is type(theirs) is PreTrainedTokenizerFast
    assert ours.backend_tokenizer.to_str() == theirs.backend_tokenizer.to_str()
    assert ours(TEXT)["input_ids"] == theirs(TEXT)["input_ids"] and len(ours) == len(theirs) == 201088
    assert ours.added_tokens_decoder == theirs.added_tokens_decoder and ours.chat_template == theirs.chat_template
    assert (ours.eos_token, ours.pad_token, ours.special_tokens_map) == \
        (theirs.eos_token, theirs.pad_token, theirs.special_tokens_map)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    for name in ("tokenizer_config.json", "tokenizer.json"):
        assert json.loads((tmp_path / "ours" / name).read_text()) == json.loads((tmp_path / "theirs" / name).read_text())


def test_hsd_loads_a_plain_tokenizer_directory_through_it(tiny_model_dir, tmp_path):
    tok, parses = _parses(lambda: load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir))))
    assert parses == 1 and tok.padding_side == "left"
    assert fast_tokenizer.is_plain(tiny_model_dir)
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "tokenizer.json").write_text("{}")
    (custom / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    assert not fast_tokenizer.is_plain(custom) and not fast_tokenizer.is_plain(tmp_path / "missing")


def test_the_count_sees_a_second_parse(tiny_model_dir):
    """The counter itself: building the tokenizer and deep-copying it, as transformers <= 5.17 does, is two."""
    import copy

    from tokenizers import Tokenizer

    _, parses = _parses(lambda: copy.deepcopy(Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))))
    assert parses == 2
