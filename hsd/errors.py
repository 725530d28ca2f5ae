"""The one exception family the CLI turns into a clear message and a non-zero exit.

Every user-fixable problem (bad config, bad data, bad template, missing model, unwritable
results directory, ...) raises a subclass of :class:`HsdError` whose message says what is
wrong, where, and how to fix it. ``hsd.cli.main`` prints it as one line and exits 2; anything
else is a bug and keeps its traceback.
"""


class HsdError(Exception):
    """Base class for user-facing errors."""


class DataError(HsdError):
    """The dataset file or a row in it is invalid."""


class TemplateError(HsdError):
    """A prompt template is invalid or a strategy does not exist."""


class ModelError(HsdError):
    """The model, tokenizer or adapter cannot be loaded."""


class TrainingDataError(HsdError):
    """The fine-tuning data is invalid."""
