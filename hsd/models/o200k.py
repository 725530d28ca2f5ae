"""gpt-oss's real tokenizer (o200k_harmony), rebuilt offline: ``hsd model tokenizer``.

gpt-oss-20b reads text through tiktoken's ``o200k_base`` BPE (199,998 ranks) plus the harmony
special tokens. No machine here can download ``o200k_base.tiktoken`` or the model's
``tokenizer.json``, but the pinned PyPI package ``quicktok-v1`` ships the same ranks in its own
binary format. So the set-up step (``make install``, the tiny-model build, or the first use)

1. rewrites ``quicktok/data/o200k.vocab`` in tiktoken's text format (``base64(bytes) rank``,
   by rank) and checks its sha256 against OpenAI's published file — a mismatch is an error, never
   a silently different tokenizer; openai-harmony reads this file via ``TIKTOKEN_ENCODINGS_BASE``;
2. turns the ranks into a Hugging Face fast tokenizer the way gpt-oss's own ``tokenizer.json`` is
   built: byte-level BPE whose merges replay tiktoken's rank order, the o200k split pattern,
   ``ignore_merges`` (a piece that is a whole token stays one token, as in tiktoken), every
   harmony special token at its id (quicktok's ``o200k_harmony.special``: the 21 of the released
   ``tokenizer_config.json``, 199998-200018, and the reserved ids up to 201087), and hsd's
   harmony chat template.

The vocabulary is 201,088 entries, one per row of the model's embedding. The released
``tokenizer.json`` stops at 200018, so there a reserved id a model emits decodes to nothing and
``<|reserved_200100|>`` in a text is plain text; here both match openai-harmony. The one name
lost is ``<|reserved_200018|>``, tiktoken's alias of ``<|endofprompt|>`` (one id has one name in
a Hugging Face vocabulary).

Both land in ``<cache>/o200k_harmony-v<RECIPE_VERSION>/`` (:func:`hsd.paths.cache_root`:
``$HSD_CACHE_DIR``, else a checkout's ``.cache/``, else the user's cache directory), built once
under a file lock and published by a rename. Nothing is downloaded, at set-up or at run time.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

from hsd.errors import ModelError
from hsd.paths import cache_root
from hsd.runs import publish_dir

RECIPE_VERSION = "2"  # bump when the files built here change: the cache directory keys on it
QUICKTOK_PIN = "quicktok-v1==0.4.0"
TIKTOKEN_FILE = "o200k_base.tiktoken"
# OpenAI's o200k_base.tiktoken (3,613,922 bytes); openai-harmony checks the same hash.
TIKTOKEN_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# gpt-oss's embedding rows: the ranks + every harmony special and reserved id (..201087).
VOCAB_SIZE = 201_088
BOS, PAD, EOS, CALL = "<|startoftext|>", "<|endoftext|>", "<|return|>", "<|call|>"
# Their ids in o200k_harmony (fixed by the pinned special-token table; tests/unit/test_o200k.py checks
# the built tokenizer agrees): a random model's config takes them without loading the 27 MB tokenizer.
SPECIAL_IDS = {BOS: 199_998, PAD: 199_999, EOS: 200_002, CALL: 200_012}

# tiktoken's o200k_base split pattern (tiktoken_ext/openai_public.py), also gpt-oss's tokenizer.json.
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
_TEMPLATE = Path(__file__).with_name("harmony_chat_template.jinja")
_STAMP = "hsd_o200k.json"


def quicktok_data() -> Path:
    """The installed ``quicktok/data`` directory (found without importing quicktok's extension)."""
    spec = importlib.util.find_spec("quicktok")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the PyPI package {QUICKTOK_PIN} is not installed; it carries gpt-oss's o200k "
                         f"vocabulary. Fix: make install (or pip install {QUICKTOK_PIN})")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def read_vocab(path: Path) -> list[bytes]:
    """``o200k.vocab``: u32 count, then per entry u16 length, the bytes, u32 rank (little-endian).
    Returns the tokens by rank; ranks must be exactly 0..count-1."""
    data = _read(path)
    (count,), off, by_rank = struct.unpack_from("<I", data, 0), 4, {}
    try:
        for _ in range(count):
            (n,) = struct.unpack_from("<H", data, off)
            token = data[off + 2: off + 2 + n]
            (rank,) = struct.unpack_from("<I", data, off + 2 + n)
            by_rank[rank], off = token, off + 6 + n
    except struct.error as exc:
        raise ModelError(f"{path}: truncated after {len(by_rank)} of {count} entries ({exc}); "
                         f"reinstall {QUICKTOK_PIN}") from exc
    if off != len(data) or sorted(by_rank) != list(range(count)):
        raise ModelError(f"{path}: not a quicktok vocabulary (ranks not 0..{count - 1} or trailing bytes); "
                         f"reinstall {QUICKTOK_PIN}")
    return [by_rank[r] for r in range(count)]


def read_specials(path: Path) -> dict[int, str]:
    """``o200k_harmony.special``: u32 count, then per entry u32 id, u16 length, the name. An id
    listed twice (``<|endofprompt|>`` and its reserved alias, 200018) keeps its first name."""
    data = _read(path)
    (count,), off, names = struct.unpack_from("<I", data, 0), 4, {}
    for _ in range(count):
        rank, n = struct.unpack_from("<IH", data, off)
        names.setdefault(rank, data[off + 6: off + 6 + n].decode("utf-8"))
        off += 6 + n
    return names


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc}; reinstall {QUICKTOK_PIN}") from exc


def tiktoken_text(tokens: list[bytes]) -> bytes:
    """tiktoken's text format: one ``base64(token) rank`` line per token, by rank."""
    return b"".join(base64.b64encode(t) + b" %d\n" % r for r, t in enumerate(tokens))


def verify_sha256(path: Path, expected: str = TIKTOKEN_SHA256) -> None:
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise ModelError(
            f"{path}: sha256 {actual}, expected {expected} (OpenAI's o200k_base.tiktoken). The vocabulary "
            f"in the installed quicktok package differs from gpt-oss's; install exactly {QUICKTOK_PIN} "
            f"(pip install --force-reinstall {QUICKTOK_PIN}) and run `hsd model tokenizer` again")


def _byte_encoder() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = bytes_to_unicode()
    return [table[b] for b in range(256)]


def bpe_vocab_and_merges(tokens: list[bytes]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level vocab and the merges that replay tiktoken's BPE: every split of a token into two
    tokens is a merge ranked by the token's rank, so the pair HF merges first is the pair whose
    result tiktoken merges first (the same recipe as transformers' TikTokenConverter)."""
    enc = _byte_encoder()
    text = lambda b: "".join(enc[x] for x in b)  # noqa: E731
    ranks = {t: r for r, t in enumerate(tokens)}
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for rank, token in enumerate(tokens):
        splits = [(ranks[token[:i]], ranks[token[i:]]) for i in range(1, len(token))
                  if token[:i] in ranks and token[i:] in ranks]
        merges.extend((rank, left, right, tokens[left], tokens[right]) for left, right in splits)
    merges.sort()
    return {text(t): r for r, t in enumerate(tokens)}, [(text(a), text(b)) for *_, a, b in merges]


def build_fast_tokenizer(tokens: list[bytes], specials: dict[int, str]) -> Any:
    """gpt-oss's tokenizer as a ``PreTrainedTokenizerFast`` (special ids checked, not assumed)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab, merges = bpe_vocab_and_merges(tokens)
    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(O200K_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    wanted = [(i, specials.get(i)) for i in range(len(tokens), VOCAB_SIZE)]
    missing = [i for i, name in wanted if name is None]
    if missing:
        raise ModelError(f"quicktok's o200k_harmony.special lacks ids {missing}; reinstall {QUICKTOK_PIN}")
    tok.add_special_tokens([AddedToken(name, normalized=False, special=True) for _, name in wanted])
    got = {i: tok.id_to_token(i) for i, _ in wanted}
    if got != dict(wanted):  # add_special_tokens numbers them after the vocab: check, never assume
        raise ModelError(f"special tokens landed at the wrong ids: {got}")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   clean_up_tokenization_spaces=False)
    fast.chat_template = _TEMPLATE.read_text(encoding="utf-8")
    return fast


def cache_dir(root: Path | None = None) -> Path:
    """Where this recipe's files live (``TIKTOKEN_ENCODINGS_BASE`` and ``<it>/tokenizer``)."""
    return (root or cache_root()) / f"o200k_harmony-v{RECIPE_VERSION}"


def ensure_built(root: Path | None = None) -> Path:
    """Build the cache once (file lock: concurrent ranks and test sessions wait for one builder)."""
    out = cache_dir(root)
    if (out / _STAMP).exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not (out / _STAMP).exists():
            _build(out)
    return out


def _build(out: Path) -> None:
    data = quicktok_data()
    tokens = read_vocab(data / "o200k.vocab")
    with publish_dir(out) as tmp:  # a failed check leaves nothing in the cache
        (tmp / TIKTOKEN_FILE).write_bytes(tiktoken_text(tokens))
        verify_sha256(tmp / TIKTOKEN_FILE)
        save_tokenizer(build_fast_tokenizer(tokens, read_specials(data / "o200k_harmony.special")), tmp / "tokenizer")
        stamp = {"recipe_version": RECIPE_VERSION, "source": QUICKTOK_PIN, "sha256": TIKTOKEN_SHA256,
                 "vocab_size": VOCAB_SIZE}
        (tmp / _STAMP).write_text(json.dumps(stamp, indent=2) + "\n")


def save_tokenizer(tokenizer: Any, directory: Path) -> None:
    """``save_pretrained`` plus the ``added_tokens_decoder`` that gpt-oss's own tokenizer_config.json
    carries (transformers 5 leaves it out). Without it, every load parses the 27 MB tokenizer.json
    a second time in Python to find the added tokens: 2.9 s of CPU per load instead of 1.2 s."""
    tokenizer.save_pretrained(directory)
    path = Path(directory) / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["added_tokens_decoder"] = {
        str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                 "single_word": t.single_word, "special": t.special}
        for i, t in sorted(tokenizer.backend_tokenizer.get_added_tokens_decoder().items())}
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_tokenizer(root: Path | None = None) -> Any:
    """gpt-oss's tokenizer, built on first use (parsing its 27 MB tokenizer.json takes ~1 s, once:
    :mod:`hsd.models.fast_tokenizer`)."""
    from hsd.models import fast_tokenizer

    return fast_tokenizer.from_pretrained(ensure_built(root) / "tokenizer")
