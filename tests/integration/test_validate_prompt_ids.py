"""``hsd validate`` with each prompt tokenized once, the shared head once per prefix (hsd.inference.prompt_ids),
writes the records the old path wrote: every prompt rendered with its own sentinel probe, tokenized whole
for batching and whole again by the backend. Tiny model, CPU, refill generate (the default path)."""

from __future__ import annotations

import pytest

from _run_helpers import merged_records, write_config
from hsd.config import load_config
from hsd.inference import prompt_ids
from hsd.inference.hf import HFBackend
from hsd.recipes import validate

pytestmark = pytest.mark.integration


def old_path(monkeypatch) -> None:
    monkeypatch.setattr(validate, "render_splits",
                        lambda mode, prompter, samples: [validate.render_split(mode, prompter, s) for s in samples])
    monkeypatch.setattr(prompt_ids, "token_ids",
                        lambda tok, prompts: prompt_ids.plain_ids(tok, [p.text for p in prompts]))
    stream = HFBackend.generate_stream

    def tokenizing_again(self, prompts, settings, batches, forced_new_tokens=None, *, prompt_ids=None):
        return stream(self, prompts, settings, batches, forced_new_tokens)  # the backend tokenizes

    monkeypatch.setattr(HFBackend, "generate_stream", tokenizing_again)


@pytest.mark.parametrize("template, samples", [("simple", 20), ("rich", 6)])
def test_records_equal_the_old_paths(tiny_model_dir, tmp_path, monkeypatch, template, samples):
    cfg = load_config(write_config(tmp_path, tiny_model_dir, prompt={"template": template},
                                   data={"max_samples": samples}))
    seen = []
    stream = HFBackend.generate_stream

    def spy(self, prompts, settings, batches, forced_new_tokens=None, *, prompt_ids=None):
        seen.append((self.refill is not None, prompt_ids is not None and len(prompt_ids) == len(prompts)))
        return stream(self, prompts, settings, batches, forced_new_tokens, prompt_ids=prompt_ids)

    with monkeypatch.context() as m:
        m.setattr(HFBackend, "generate_stream", spy)
        new = merged_records(validate.run(cfg, tmp_path / "new"))
    assert seen == [(True, True)]  # the refill path, given the ids validate computed
    with monkeypatch.context() as m:
        old_path(m)
        old = merged_records(validate.run(cfg, tmp_path / "old"))
    assert len(new) == samples and {p.name for p in (tmp_path / "new" / "prompts").iterdir()} == \
        {p.name for p in (tmp_path / "old" / "prompts").iterdir()}
    drop = ("latency_s",)
    assert {k: {f: v for f, v in r.items() if f not in drop} for k, r in new.items()} == \
        {k: {f: v for f, v in r.items() if f not in drop} for k, r in old.items()}
