"""Known third-party deprecation warnings that say nothing to an hsd user, filtered by message.

Each is a library telling *hsd's* code (or another library's) about an API rename; the user
can do nothing about it, and one per batch or step buries the lines that matter in a job log.
Only these exact messages are filtered — any other warning still shows.
"""

from __future__ import annotations

import warnings

# (category, regex matched against the start of the message, why it is noise)
KNOWN = (
    (FutureWarning, r"`past_key_values` is deprecated and will be removed",
     "transformers 5.x renames GptOssModel.forward's argument; raised inside generate()"),
    (FutureWarning, r"`gradient_checkpointing_enable` is deprecated and will be removed",
     "transformers 5.x renames it; peft calls the old name when it prepares the model"),
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated and will be removed",
     "transformers 5.x renames it; peft / accelerate read the old property"),
)


def quiet_known_noise() -> None:
    """Install the filters (idempotent: ``warnings`` drops duplicate filters)."""
    for category, message, _ in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category)
