"""``inference.backend: tp`` — tensor + expert parallel: every rank holds a slice of every layer.

transformers' own parallel plans for gpt-oss (``DistributedConfig(tp_size=N, ep_size=N)``,
``tp_plan="auto"``): each rank holds 1/N of the experts of every MoE layer (``base_model_ep_plan``,
experts split on the expert dimension) and 1/N of the vocabulary rows of the embedding and the
LM head (``base_model_tp_plan`` + ``_tp_plan``); attention, router and norms (~2% of gpt-oss-120b)
are replicated. In a forward pass every rank runs its experts on the whole batch with the other
ranks' routes masked, and one all-reduce per MoE layer sums the parts (transformers'
``AllReduceEP``: no token exchange, no host sync). Unlike ZeRO-3 no weight ever moves: per token
the only traffic is one hidden-state all-reduce per layer, so decode costs about what a replica's
would.

All ranks must run the SAME inputs in lock-step. Validation still hands every rank its own
shard of samples (resume and the shard files are unchanged); each step gathers the ranks'
prompts (gloo, a few KB), runs the union batch on every rank and keeps this rank's rows. A rank
with nothing left joins with an empty share (:meth:`finish`). Steps run under
:class:`hsd.inference.lockstep.LockstepBackoff`: an out-of-memory error halves every rank's share
and retries. Sampling uses the same seed on every rank (``inference.seed``), so sampled tokens
agree too; ``generate`` runs with ``synced_gpus`` or the static-cache decoder, whose stop test
is the same on every rank because the tokens are.

Experts run with transformers' ``grouped_mm`` by default: hsd's fused ``hsd_grouped`` experts do
not handle the masked (off-rank) routes expert parallelism hands them.
"""

from __future__ import annotations

from typing import Any

from hsd.config import Config, ConfigError
from hsd.errors import ModelError
from hsd.inference import generation
from hsd.inference.base import Backend, GenerationSettings, Output
from hsd.inference.batching import empty_cuda_cache
from hsd.inference.graph_decoder import GraphDecoder
from hsd.inference.label_scores import LabelIds
from hsd.inference.lockstep import Agreement, LockstepBackoff, log_partition
from hsd.inference.score import Scorer, score_outputs

EP_EXPERTS = "grouped_mm"  # the default experts implementation here (see the module docstring)
UNSUPPORTED_EXPERTS = ("hsd_grouped", "auto")


class TPBackend(Backend):
    """A tensor/expert-parallel model; every rank runs the union of the ranks' batches."""

    collective = True  # every forward pass is a collective: all ranks build it and step together

    def __init__(self, cfg: Config, device: str, rank: int, tokenizer: Any) -> None:
        import torch

        super().__init__(cfg, device, rank, tokenizer)
        torch.manual_seed(cfg.inference.seed)  # the same on every rank: sampled tokens must agree
        self.model = load_sharded(cfg, device)
        log_partition(self.model, rank)
        self.stop_ids = generation.stop_ids(tokenizer)
        self.labels = LabelIds.from_tokenizer(tokenizer)  # generate mode's p_hate (hsd.inference.label_scores)
        self.agreement = Agreement()
        self.world = self.agreement.world_size
        self.steps = LockstepBackoff(cfg.inference.batch_size, rank, self.agreement, on_oom=empty_cuda_cache)
        inf = cfg.inference
        self.decoder = GraphDecoder(self.model, cuda_graphs=inf.cuda_graphs) if inf.static_cache else None
        self.scorer = Scorer(self.model, tokenizer, reuse_prefix=inf.prefix_cache)  # same inputs: same cache
        self._settings = GenerationSettings(1, 0.0, 1.0)

    def generate(self, prompts: list[str], settings: GenerationSettings) -> list[Output]:
        self._settings = settings
        return self.steps(prompts, list, self._run_generate)

    def score(self, prompts: list[str]) -> list[Output]:
        return self.steps(prompts, list, self._run_score)

    def finish(self) -> None:
        """Join the other ranks' remaining steps with an empty share until nobody has work left."""
        run = self._run_score if self.cfg.inference.mode == "score" else self._run_generate
        self.steps.finish(list, run)

    def _union(self, mine: list[str]) -> tuple[list[str], slice]:
        """Every rank's prompts in rank order, and where this rank's rows are in it."""
        parts = self.agreement.gather(mine)
        start = sum(len(p) for p in parts[: self.rank])
        return [p for part in parts for p in part], slice(start, start + len(mine))

    def _run_generate(self, mine: list[str]) -> list[Output]:
        union, rows = self._union(mine)
        enc = generation.encode(self.tokenizer, union, self.device)
        if self.decoder is None:
            outs = generation.generate_encoded(self.model, self.tokenizer, enc, self._settings, self.stop_ids,
                                               synced_gpus=self.world > 1, labels=self.labels)
            return outs[rows]
        # Rows padded to every rank's full share, so one static cache (and CUDA graph) serves every step.
        sampling = generation.sampling(self._settings, self.stop_ids, self.tokenizer.pad_token_id)
        outs = generation.generate_static(self.decoder, self.tokenizer, enc, sampling, self.steps.size * self.world,
                                          self.stop_ids, self.labels)
        return outs[rows]

    def _run_score(self, mine: list[str]) -> list[Output]:
        union, rows = self._union(mine)
        return score_outputs(self.scorer, union)[rows]


def parallel_config(world: int) -> Any:
    """Experts split over all ``world`` ranks, plus the model's own tensor-parallel plan (``tp_plan`` auto).

    transformers >= 5.2x spells it ``ep_size`` (tested here, 5.24); older 5.x releases had only
    ``enable_expert_parallel=True`` — which newer ones map to an *empty* tensor-parallel plan that
    gpt-oss refuses ("tp_size=2 was requested, but GptOssForCausalLM has no tp_plan").
    """
    import dataclasses

    from transformers.distributed import DistributedConfig

    if "ep_size" in {f.name for f in dataclasses.fields(DistributedConfig)}:
        return DistributedConfig(tp_size=world, ep_size=world)
    return DistributedConfig(tp_size=world, enable_expert_parallel=True)  # untested: no such release here


def load_sharded(cfg: Config, device: str) -> Any:
    """The model with transformers' tensor + expert parallel plans over all ranks of the job."""
    import torch
    import torch.distributed as dist

    from hsd.gptoss.kernels import compile_flag, resolve_attn_implementation
    from hsd.models.fullsize import build_random_sharded, is_random_spec, random_from_pretrained
    from hsd.models.loader import resolve_dtype

    m = cfg.model
    if m.adapter is not None:
        raise ConfigError("inference.backend=tp does not apply LoRA adapters: merge the adapter into the base model "
                          "first (hsd merge --out DIR, then model.name_or_path=DIR, model.adapter=null), or use "
                          "inference.backend=deepspeed or hf")
    experts = m.experts_implementation or EP_EXPERTS
    if experts in UNSUPPORTED_EXPERTS:
        raise ConfigError(f"model.experts_implementation={experts} cannot run expert-parallel (inference.backend=tp): "
                          f"leave it unset ({EP_EXPERTS}) or use grouped_mm, batched_mm or eager")
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(m, device), "experts_implementation": experts,
                              "attn_implementation": resolve_attn_implementation(
                                  m.attn_implementation, compile_flag(m.compile_attention, training=False))}
    if world > 1:
        kwargs["distributed_config"] = parallel_config(world)
    else:
        kwargs["device_map"] = {"": device}
    try:
        if is_random_spec(m.name_or_path) and world > 1:
            name = m.name_or_path.split(":", 1)[1]
            model = build_random_sharded(name, kwargs.pop("distributed_config"), **kwargs)
        elif is_random_spec(m.name_or_path):  # what from_pretrained would give on one device
            model = random_from_pretrained("model", m.name_or_path, **kwargs)
        else:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(m.name_or_path, trust_remote_code=m.trust_remote_code, **kwargs)
    except (OSError, ValueError) as exc:  # e.g. experts not divisible by the world size; not cached offline
        raise ModelError(f"cannot load {m.name_or_path} tensor/expert-parallel over {world} ranks "
                         f"(inference.backend=tp): {' '.join(str(exc).split())[:600]}") from None
    torch.manual_seed(cfg.inference.seed)  # loading may draw random numbers; decoding starts from the seed
    return model.eval()
