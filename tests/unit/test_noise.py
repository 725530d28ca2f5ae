"""hsd.noise: the known deprecation messages are filtered, and nothing else."""

import warnings

from hsd.noise import KNOWN, quiet_known_noise


def test_known_messages_are_filtered_and_others_still_show() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()
        for category, message, _ in KNOWN:
            warnings.warn(message.replace("\\", "") + " in version 5.40.0. Use `cache` instead.", category)
        warnings.warn("`something_else` is deprecated and will be removed", FutureWarning)
        warnings.warn("`past_key_values` is deprecated and will be removed", DeprecationWarning)  # another category
    assert [str(w.message) for w in caught] == ["`something_else` is deprecated and will be removed",
                                                "`past_key_values` is deprecated and will be removed"]
