"""Generate mode's P(hate): the label token's probability where the answer names the label.

Score mode reads P(hate) from one forward pass over a prompt that ends in the answer opening.
Generate mode already computes the same next-token logits at the step where the model writes its
answer's label (``{"classification": "hate"`` / ``classification: normal`` / a bare ``hate``
after ``<|message|>``), so the decoders keep, per generated token, the logits of the label words'
first tokens (a few floats per row and step, gathered on the device: no vocabulary-sized copy),
and after the answer is complete :func:`label_score` finds that step and returns

    P(hate) = p(hate's first token) / (p(hate's first token) + p(normal's first token))

at it, from the raw logits (the model's distribution, whatever temperature sampled the token);
the softmax normaliser cancels, so it is ``sigmoid(logit_hate - logit_normal)``. The label words
are looked up in several spellings ("hate", " hate", "Hate", and the token that follows the
answer opening, which may carry the quote): the pair of the spelling the model wrote is used.

The label step is the *last* generated label-word token that follows a ``classification`` /
``label`` / ``prediction`` key (``:`` or ``=``, quotes optional) or the final channel's
``<|message|>`` directly. Validation keeps the score only when the label named there is the label
the answer reader read (:class:`hsd.inference.modes.GenerateMode`); otherwise, or when no such
step exists, p_hate stays null and the report counts the sample as unscored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hsd.inference.score import ANSWER_OPENING, LABEL_WORDS

# spellings of a label word the model may write as its answer's first label token
SPELLINGS = ("{w}", " {w}", "{W}", " {W}")
WINDOW = 24  # tokens before a candidate step decoded to check that a label key precedes it
_KEY = re.compile(r"""(?:classification|label|prediction)["']?\s*[:=]\s*["']?$|<\|message\|>\s*["']?$""", re.I)


@dataclass(frozen=True)
class LabelIds:
    """First token ids of each spelling of the two labels, aligned: ``hate[k]`` pairs ``normal[k]``."""

    hate: tuple[int, ...]
    normal: tuple[int, ...]

    @property
    def ids(self) -> tuple[int, ...]:
        """The order of the recorded logits: every hate spelling, then every normal spelling."""
        return self.hate + self.normal

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> Optional["LabelIds"]:
        """None when no spelling gives the two labels distinct first tokens (nothing to record)."""
        pairs = []
        for spelling in SPELLINGS:
            ids = [tokenizer(spelling.format(w=w, W=w.capitalize()), add_special_tokens=False)["input_ids"]
                   for w in LABEL_WORDS]
            pairs.append((ids[0][0], ids[1][0]) if all(_whole(tokenizer, t, w) for t, w in zip(ids, LABEL_WORDS))
                         else None)
        opening = tokenizer(ANSWER_OPENING, add_special_tokens=False)["input_ids"]
        after = [tokenizer(ANSWER_OPENING + w, add_special_tokens=False)["input_ids"] for w in LABEL_WORDS]
        n = len(opening) - 1  # the opening's last token may merge with the label (a quote): re-read from it
        if all(len(a) > n for a in after) and all(_whole(tokenizer, a[n:], w) for a, w in zip(after, LABEL_WORDS)):
            pairs.append((after[0][n], after[1][n]))
        kept: list[tuple[int, int]] = []
        for pair in pairs:
            if pair and pair[0] != pair[1] and pair not in kept and not set(pair) & {i for p in kept for i in p}:
                kept.append(pair)
        if not kept:
            return None
        return cls(tuple(h for h, _ in kept), tuple(n for _, n in kept))


def _whole(tokenizer: Any, ids: Sequence[int], word: str) -> bool:
    """The first token is the whole word (quote and space aside): "H" of "Hate" would also start
    every other H-word, so its probability is not the label's."""
    return bool(ids) and tokenizer.decode([ids[0]]).strip(' "').lower() == word


def gather(logits: Any, ids: Any) -> Any:
    """The recorded columns of one step's logits (rows, vocab) -> (rows, K), in fp32."""
    return logits.index_select(-1, ids).float()


def label_score(tokenizer: Any, tokens: Sequence[int], step_logits: Any,
                labels: Optional[LabelIds]) -> tuple[Optional[float], Optional[str]]:
    """(P(hate), label named) at the answer's label step, or (None, None) when there is none.
    ``step_logits``: (steps, K) recorded logits (a CPU tensor or nested lists)."""
    if labels is None or step_logits is None:
        return None, None
    hate, normal = set(labels.hate), set(labels.normal)
    for i in range(min(len(tokens), len(step_logits)) - 1, -1, -1):
        tok = tokens[i]
        if tok not in hate and tok not in normal:
            continue
        before = tokenizer.decode(list(tokens[max(0, i - WINDOW): i]), skip_special_tokens=False,
                                  clean_up_tokenization_spaces=False)
        if not _KEY.search(before):
            continue
        k = labels.hate.index(tok) if tok in hate else labels.normal.index(tok)
        row = step_logits[i]
        diff = float(row[len(labels.hate) + k]) - float(row[k])  # logit_normal - logit_hate
        p = 1.0 / (1.0 + math.exp(diff)) if diff < 700 else 0.0
        return p, LABEL_WORDS[0] if tok in hate else LABEL_WORDS[1]
    return None, None
