"""``inference.backend: deepspeed`` — ZeRO-3 sharded bf16 inference, for GPUs that cannot hold a replica.

Every parameter is partitioned across the job's ranks (weights are split as they load, so no
rank ever holds the whole model) and gathered layer by layer during the forward pass. Each
rank still evaluates its *own* samples: data parallel over a sharded model.

Because every forward pass is a collective (the all-gathers), all ranks must make the same
number of them: ``generate`` runs with ``synced_gpus=True`` (a rank whose batch is done keeps
stepping until every rank's is), and batches run as lock-step steps
(:class:`hsd.inference.lockstep.LockstepBackoff`): the ranks agree before and after each one,
so an out-of-memory error on any rank makes every rank halve its batch and retry, another error
ends every rank, and a rank that runs out of samples first keeps joining with a one-token dummy
batch in :meth:`finish` until every rank is done. Score mode does the same with dummy score
batches (one forward pass per distinct label continuation per batch, identical on every rank;
the shared-prefix cache is off here because ranks could disagree on when to build it).

Use it when the model does not fit one GPU's memory; when it fits, ``backend: hf`` on each GPU
(data parallel, replicas) is faster — no all-gathers, CUDA-graph decode (README, "Backends").
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hsd import textio
from hsd.config import Config, ConfigError
from hsd.inference import generation
from hsd.inference.base import Backend, GenerationSettings, Output
from hsd.inference.batching import empty_cuda_cache
from hsd.inference.label_scores import LabelIds
from hsd.inference.lockstep import Agreement, LockstepBackoff, log_partition
from hsd.inference.score import ANSWER_OPENING, Scorer, score_outputs

DEFAULT_DS_CONFIG = "ds_configs/zero3_inference.json"


def inference_ds_config(path_or_name: str, hidden_size: int, bf16: bool) -> dict[str, Any]:
    """The ZeRO-3 inference JSON with its ``"auto"`` values filled as transformers does for training."""
    from hsd.training.accel import fill_autos, hidden_size_autos, resolve_ds_config

    path = resolve_ds_config(path_or_name)
    try:
        config = json.loads(textio.read_text(path, error=ConfigError))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    zero = config.get("zero_optimization", {})
    if zero.get("stage") != 3:
        raise ConfigError(f"{path}: the deepspeed inference backend needs zero_optimization.stage 3")
    config = copy.deepcopy(config)
    fill_autos(config["zero_optimization"], hidden_size_autos(hidden_size))
    if config.get("bf16", {}).get("enabled") == "auto":
        config["bf16"]["enabled"] = bf16
    return config


class DeepSpeedBackend(Backend):
    """ZeRO-3 partitioned model; ``generate`` / ``score`` in lockstep with the other ranks."""

    collective = True  # every rank must build it and make the same calls (see finish)

    def __init__(self, cfg: Config, device: str, rank: int, tokenizer: Any) -> None:
        super().__init__(cfg, device, rank, tokenizer)
        self.engine = _load_engine(cfg, device)
        self.model = self.engine.module
        log_partition(self.model, rank)
        self.stop_ids = generation.stop_ids(tokenizer)
        self.labels = LabelIds.from_tokenizer(tokenizer)  # generate mode's p_hate (hsd.inference.label_scores)
        self.scorer = Scorer(self.model, tokenizer, reuse_prefix=False)
        self.steps = LockstepBackoff(cfg.inference.batch_size, rank, Agreement(), on_oom=empty_cuda_cache)
        self._dummy = tokenizer.decode([tokenizer.pad_token_id or 0])
        self._settings = GenerationSettings(1, 0.0, 1.0)  # the dummies' settings until a real batch comes

    def generate(self, prompts: list[str], settings: GenerationSettings) -> list[Output]:
        self._settings = settings
        return self.steps(prompts, self._prepare_generate, self._run_generate)

    def score(self, prompts: list[str]) -> list[Output]:
        return self.steps(prompts, self._prepare_score, self._run_score)

    def finish(self) -> None:
        """Join the other ranks' remaining batches with dummy ones until nobody has work left."""
        if self.cfg.inference.mode == "score":
            self.steps.finish(self._prepare_score, self._run_score)
        else:
            self.steps.finish(self._prepare_generate, self._run_generate)

    def _prepare_generate(self, prompts: list[str]) -> Any:
        return generation.encode(self.tokenizer, list(prompts) or [self._dummy], self.device)

    def _run_generate(self, enc: Any) -> list[Output]:
        return generation.generate_encoded(self.model, self.tokenizer, enc, self._settings, self.stop_ids,
                                           synced_gpus=self.steps.agreement.distributed, labels=self.labels)

    def _prepare_score(self, prompts: list[str]) -> list[str]:
        return list(prompts) or [self._dummy + ANSWER_OPENING]

    def _run_score(self, prompts: list[str]) -> list[Output]:
        return score_outputs(self.scorer, prompts)


def _load_engine(cfg: Config, device: str) -> Any:
    """Load the model partitioned (ZeRO-3 init during from_pretrained) and wrap it in an engine."""
    import deepspeed
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig

    from hsd.distributed import init_distributed
    from hsd.models.fullsize import architecture_config, is_random_spec
    from hsd.gptoss.kernels import compile_flag
    from hsd.models.loader import apply_adapter, check_source, from_pretrained, resolve_dtype

    m = cfg.model
    source = check_source(m.name_or_path)
    hidden = (architecture_config(source.split(":", 1)[1]) if is_random_spec(source)
              else _hf_config(source, m.trust_remote_code)).hidden_size
    dtype = resolve_dtype(m, device)
    ds = inference_ds_config(cfg.inference.ds_config, hidden, bf16=dtype == torch.bfloat16)
    init_distributed("cuda" if device.startswith("cuda") else "cpu", always=True)  # DeepSpeed needs a group, even of one
    zero3 = HfDeepSpeedConfig(ds)  # while alive (a weak reference in transformers), from_pretrained partitions
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": m.attn_implementation,
                              "trust_remote_code": m.trust_remote_code}
    if m.experts_implementation is not None:
        kwargs["experts_implementation"] = m.experts_implementation
    model = from_pretrained(AutoModelForCausalLM, source, "model",
                            compile_attention=compile_flag(m.compile_attention, training=False),
                            compile_experts=compile_flag(m.compile_experts, training=False), **kwargs)
    if m.adapter is not None:
        model = apply_adapter(model, m.adapter)
    engine = deepspeed.initialize(model=model, config_params=ds)[0]
    engine.module.eval()
    del zero3  # alive until the engine is built
    return engine


def _hf_config(source: str, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
