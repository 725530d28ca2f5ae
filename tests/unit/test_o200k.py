"""hsd.models.o200k: gpt-oss's tokenizer rebuilt offline from quicktok-v1, hash-checked, cached once.

The built tokenizer is compared with the released tokenizer_config.json here; with openai-harmony
(OpenAI's own encoding) in test_harmony_oracle.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from hsd.errors import ModelError
from hsd.models import o200k

REPO = Path(__file__).resolve().parents[2]
RELEASED = REPO.parent / "shared" / "reference" / "gpt-oss" / "tokenizer_config.json"


@pytest.fixture(scope="module")
def built() -> Path:
    return o200k.ensure_built()


@pytest.fixture(scope="module")
def tok(built):
    return o200k.load_tokenizer()


def test_rebuilt_file_is_openais_o200k_base(built):
    data = (built / o200k.TIKTOKEN_FILE).read_bytes()
    assert len(data) == 3_613_922 and hashlib.sha256(data).hexdigest() == o200k.TIKTOKEN_SHA256
    first, last = data.splitlines()[0], data.splitlines()[-1]
    assert first == b"IQ== 0" and last.endswith(b" 199997")  # "!" is rank 0


def test_vocabulary_and_named_ids(tok):
    assert len(tok) == o200k.VOCAB_SIZE == 201_088
    ids = dict(zip(["<|return|>", "<|call|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>"],
                   [200002, 200012, 200006, 200007, 200008, 200005, 200003]))
    assert {t: tok.convert_tokens_to_ids(t) for t in ids} == ids
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (199998, 200002, 199999)
    assert tok.convert_ids_to_tokens(201087) == "<|reserved_201087|>"
    assert tok.chat_template == (REPO / "hsd" / "models" / "harmony_chat_template.jinja").read_text()
    assert {t: tok.convert_tokens_to_ids(t) for t in o200k.SPECIAL_IDS} == o200k.SPECIAL_IDS  # a random model's config


def test_a_random_models_config_has_the_tokenizers_special_ids_without_loading_it(tok):
    from hsd.models.fullsize import architecture_config

    with_tok, without = architecture_config("gpt-oss-20b", tok), architecture_config("gpt-oss-20b")
    for key in ("bos_token_id", "pad_token_id", "eos_token_id"):
        assert getattr(with_tok, key) == getattr(without, key)
    assert without.eos_token_id == [200002, 200012]


@pytest.mark.skipif(not RELEASED.exists(), reason=f"{RELEASED} not present")
def test_every_id_of_the_released_tokenizer_config_is_the_same(tok):
    released = json.loads(RELEASED.read_text())
    names = {int(i): entry["content"] for i, entry in released["added_tokens_decoder"].items()}
    assert {i: tok.convert_ids_to_tokens(i) for i in names} == names
    assert all(entry["special"] for entry in released["added_tokens_decoder"].values())
    ours = json.loads((o200k.cache_dir() / "tokenizer" / "tokenizer_config.json").read_text())
    assert {i: ours["added_tokens_decoder"][i] for i in released["added_tokens_decoder"]} == \
        released["added_tokens_decoder"]  # saved as the release saves it (and loads 2x faster)
    assert len(ours["added_tokens_decoder"]) == 201_088 - 199_998
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (released["bos_token"], released["eos_token"],
                                                             released["pad_token"])


def test_decoding_keeps_or_strips_the_harmony_markers(tok):
    answer = ('<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>'
              '{"classification": "hate"}<|return|>')
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == answer
    assert tok.decode(ids, skip_special_tokens=True) == 'analysisthinkassistantfinal{"classification": "hate"}'


def test_score_mode_label_words_are_single_distinct_tokens_as_the_model_writes_them(tok):
    from hsd.inference.score import ANSWER_OPENING, LABEL_WORDS, LabelTokens

    labels = LabelTokens.from_tokenizer(tok)
    assert [len(c) for c in labels.continuations] == [1, 1] and len(set(labels.continuations)) == 2
    for word, cont in zip(LABEL_WORDS, labels.continuations):  # the same split inside a whole answer
        whole = tok(f'{ANSWER_OPENING}{word}", "rationale": "x"}}', add_special_tokens=False)["input_ids"]
        assert whole[: len(labels.opening) + 1] == [*labels.opening, *cont]


def fake_quicktok(root: Path, vocab: bytes) -> Path:
    """A ``quicktok`` package whose data has ``vocab`` and the real special-token list."""
    data = root / "quicktok" / "data"
    data.mkdir(parents=True)
    (root / "quicktok" / "__init__.py").write_text("")
    (data / "o200k.vocab").write_bytes(vocab)
    shutil.copy(o200k.quicktok_data() / "o200k_harmony.special", data)
    return root


def swapped_vocab() -> bytes:
    """The real o200k.vocab with the bytes of ranks 0 and 1 exchanged: well-formed, wrong."""
    tokens = o200k.read_vocab(o200k.quicktok_data() / "o200k.vocab")
    tokens[0], tokens[1] = tokens[1], tokens[0]
    return struct.pack("<I", len(tokens)) + b"".join(
        struct.pack("<H", len(t)) + t + struct.pack("<I", r) for r, t in enumerate(tokens))


def test_a_different_vocabulary_is_one_clear_error_and_nothing_is_cached(tmp_path):
    pkg = fake_quicktok(tmp_path / "pkg", swapped_vocab())
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pkg), str(REPO)])}
    res = subprocess.run([sys.executable, "-m", "hsd.cli", "model", "tokenizer", "--cache-dir", str(cache)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2, res.stderr
    error = res.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ")
    assert o200k.TIKTOKEN_FILE in error[0] and f"expected {o200k.TIKTOKEN_SHA256}" in error[0]
    assert "sha256 " in error[0] and o200k.QUICKTOK_PIN in error[0]
    assert not o200k.cache_dir(cache).exists() and not [p for p in cache.iterdir() if not p.name.endswith(".lock")]


@pytest.mark.parametrize("cut", [3, 1000])
def test_a_truncated_vocabulary_names_the_file(tmp_path, cut):
    path = tmp_path / "o200k.vocab"
    path.write_bytes((o200k.quicktok_data() / "o200k.vocab").read_bytes()[:-cut])
    with pytest.raises(ModelError, match=rf"{path}: truncated.*reinstall quicktok-v1==0\.4\.0"):
        o200k.read_vocab(path)


def test_without_quicktok_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setattr(o200k.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"quicktok-v1==0\.4\.0 is not installed.*make install"):
        o200k.quicktok_data()


def test_built_once(built, monkeypatch):
    monkeypatch.setattr(o200k, "_build", lambda out: pytest.fail("rebuilt a finished cache"))
    assert o200k.ensure_built() == built
