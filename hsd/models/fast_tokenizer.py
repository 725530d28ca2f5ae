"""A ``tokenizer.json`` tokenizer loaded with one parse of the file.

transformers 5.0 to 5.17 (at least) build a ``PreTrainedTokenizerFast`` in two parses: ``from_pretrained``'s
``convert_to_native_format`` parses ``tokenizer.json`` and hands the result to ``__init__``, which
deep-copies it — through pickling, a second full parse. gpt-oss's file is 27 MB (201,088 entries,
~200k merges): measured under transformers 5.17 on this machine, 2.23 s per load instead of 0.90 s;
on an H100 host the copy alone was ~1 s of a validation job's set-up (``__setstate__`` in its profile).
Later versions let ``__init__`` read the file itself; :func:`from_pretrained` does that on any version:
``convert_to_native_format`` leaves ``tokenizer_file`` in the keyword arguments, so ``__init__`` parses
it, once. Everything else (config, special and added tokens, chat template) is transformers' own path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOKENIZER_FILE = "tokenizer.json"
# tokenizer_config.json's class names that mean exactly PreTrainedTokenizerFast (transformers 5: an alias)
PLAIN_CLASSES = frozenset({"PreTrainedTokenizerFast", "TokenizersBackend"})


def from_pretrained(directory: str | Path, **kwargs: Any) -> Any:
    """``PreTrainedTokenizerFast.from_pretrained(directory, **kwargs)``, its ``tokenizer.json`` parsed once."""
    from transformers import PreTrainedTokenizerFast

    class _ReadByInit(PreTrainedTokenizerFast):
        @classmethod
        def convert_to_native_format(cls, trust_remote_code: bool = False, **init_kwargs: Any) -> dict[str, Any]:
            return dict(init_kwargs)  # tokenizer_file stays: __init__ builds the backend from it

    tok = _ReadByInit.from_pretrained(str(directory), **kwargs)
    tok.__class__ = PreTrainedTokenizerFast  # the class from_pretrained returns and save_pretrained names
    return tok


def is_plain(directory: str | Path) -> bool:
    """A local directory whose tokenizer is a plain ``tokenizer.json`` (PreTrainedTokenizerFast): the
    tokenizers :func:`from_pretrained` serves (a model's own class may build its backend otherwise)."""
    import json

    root = Path(directory)
    try:
        config = json.loads((root / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (root / TOKENIZER_FILE).is_file() and isinstance(config, dict) and config.get("tokenizer_class") in PLAIN_CLASSES
