"""LoRA fine-tuning under DeepSpeed (ZeRO-3 by default) through Accelerate.

    torchrun --nproc_per_node N -m hsd.cli train --config F [--data DIR] [--run-dir DIR] [overrides]

One process per rank: torchrun, submitit tasks (``TorchDistributedEnvironment().export()``)
or ``accelerate launch`` all work, because everything is read from RANK/WORLD_SIZE/... .
Without ``--data`` the fine-tuning data is written first into ``<run>/ftdata``.

A run directory holds ``config.yaml``, ``manifest.json`` (world size, tokens/s, samples/s,
peak memory, losses), ``train_log.jsonl`` (a line per step and per evaluation),
``loss_curve.png``, ``checkpoints/step_*`` (the newest ``train.keep_checkpoints``) and, when
finished, ``adapter/`` (peft, safetensors). Started again on the same directory, a run resumes
from its newest complete checkpoint and its losses equal an uninterrupted run's; on SIGUSR2
it checkpoints at the next step and exits (code 75, or submitit's requeue).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hsd.config import Config, ConfigError
from hsd.distributed import main_only
from hsd.noise import quiet_known_noise
from hsd.phases import Phases, process_age_s
from hsd.rundir import ConfigCheck, RunDirectory
from hsd.runs import Status, new_run_dir, timestamp, update_manifest
from hsd.runs import run_dir as make_run_dir
from hsd.training import checkpoint
from hsd.training.dataset import read_chat_jsonl
from hsd.training.memory import CheckpointPlan, DsChoice

LOG = "train_log.jsonl"
ADAPTER = "adapter"
# A resumed run must train the same thing: every train setting and the weights' source, except
# these, none of which alters the weights it trains (kernels — attention, experts — may change too).
CHECK = ConfigCheck(sections=("train",), keys=("model.name_or_path", "model.dtype"), free=frozenset(
    f"train.{k}" for k in ("stop_after_steps", "eval_every", "save_every", "keep_checkpoints",
                           "early_stopping_patience", "early_stopping_min_delta", "report_to")))
OUTCOMES = {"completed": Status.COMPLETED, "early_stopped": Status.COMPLETED, "stopped": Status.STOPPED}


def _claim(cfg: Config, path: Path, held: list[RunDirectory]) -> bool:
    """Rank 0: claim the run directory (refusals change nothing); True if it is a completed run
    with its adapter, which is then left as it is."""
    run = RunDirectory(path, "train", CHECK).claim(cfg)
    held.append(run)
    return run.status is Status.COMPLETED and (run.path / ADAPTER / "adapter_config.json").exists()


def _begin(cfg: Config, run: RunDirectory, world_size: int) -> Optional[str]:
    """Rank 0: start the attempt; the newest complete checkpoint to resume from."""
    run.begin(cfg, world_size, timestamp())
    checkpoint.remove_partial(run.path)
    newest = checkpoint.latest(run.path)
    return str(newest) if newest else None


def _resume(accelerator: Any, newest: Optional[str]) -> Any:
    from hsd.training.loop import TrainState

    state = TrainState(world_size=accelerator.num_processes)
    if newest is None:
        return state
    saved = checkpoint.load(accelerator, Path(newest))
    if saved["world_size"] != accelerator.num_processes:
        raise ConfigError(
            f"checkpoint {newest} was written by {saved['world_size']} ranks but this run has "
            f"{accelerator.num_processes}: DeepSpeed's ZeRO partitions need the same world size to resume"
        )
    state = TrainState(**{**saved, "resumed_at": tuple(saved["resumed_at"])})
    state.resumed_at += (state.step,)
    return state


def _start_manifest(accelerator: Any, cfg: Config, run: Path, data_dir: Path, s: Any, state: Any,
                    plans: Plans) -> None:
    from hsd.models.mxfp4_load import record_for
    from hsd.training.accel import zero_stage
    from hsd.training.lora import optimizer_parameters, trainable_counts, training_modes

    from hsd.distributed import gather

    counts = {**trainable_counts(s.engine), **training_modes(s.engine),
              "optimizer_parameters": optimizer_parameters(s.engine)}
    # What each rank itself reads at this step, gathered over the process group: the proof
    # that the ranks form one job and split the data (the silent trap is N copies of a world of 1).
    rows = gather(sorted(i for mb in s.plan.micro_batches(state.step) for i in mb))
    loads = gather(record_for(cfg.model.name_or_path))  # an MXFP4 base: who dequantized, what each rank holds
    if accelerator.is_main_process:
        if s.train.truncated:
            print(f"warning: {s.train.truncated} of {len(s.train.examples)} training rows exceed train.max_length="
                  f"{cfg.train.max_length} tokens (longest {s.train.longest}); their prompts were cut from the left",
                  flush=True)
        update_manifest(
            run, world_size=accelerator.num_processes, data_dir=str(data_dir),
            format=cfg.train.format, train_rows=len(s.train.examples), eval_rows=len(s.eval.examples),
            truncated_rows=s.train.truncated, longest_row_tokens=s.train.longest, total_steps=s.total_steps,
            steps_per_epoch=s.plan.steps_per_epoch, global_batch=s.plan.global_batch,
            zero_stage=zero_stage(accelerator.deepspeed_config), ds_config=accelerator.deepspeed_config,
            resumed_at=list(state.resumed_at), deepspeed_dp_world_size=s.engine.dp_world_size,
            rows_per_rank_at_start=rows, zero3_leaf_modules=list(s.zero3_leaves),
            loaded_elements_per_rank=list(s.loaded_elements_per_rank),
            ds_choice=plans.ds_choice.as_dict() if plans.ds_choice else None,
            checkpointing=plans.checkpointing.as_dict(), **counts,
            **({"mxfp4_load_per_rank": loads} if any(loads) else {}),
        )


def _finish(accelerator: Any, cfg: Config, run: Path, s: Any, state: Any, outcome: str, wall: float,
            held: list[RunDirectory], phases: Phases) -> None:
    from hsd.training.loop import peak_memory_gib
    from hsd.training.lora import export_adapter
    from hsd.training.plots import loss_curve

    if outcome != "stopped":
        export_adapter(accelerator, s.engine, run / ADAPTER)
    peak = peak_memory_gib(accelerator)
    if not accelerator.is_main_process:
        return
    loss_curve(run / LOG, run / "loss_curve.png")
    rate = state.train_time_s or float("nan")
    held[0].end(
        OUTCOMES[outcome], outcome=outcome, steps=state.step, train_time_s=round(state.train_time_s, 3),
        tokens_trained=state.tokens, samples_trained=state.samples,
        tokens_per_s=round(state.tokens / rate, 2), samples_per_s=round(state.samples / rate, 3),
        steady_tokens_per_s=round(state.steady_tokens / state.steady_time_s, 2) if state.steady_time_s else None,
        peak_memory_gib=peak, final_eval_loss=state.last_eval_loss, best_eval_loss=state.best_eval_loss,
        best_step=state.best_step, attempt_wall_s=round(wall, 2), phases_s=phases.rounded(),
        adapter=str(run / ADAPTER) if outcome != "stopped" else None,
    )
    print(f"where the time went (rank 0): {phases.summary()}", flush=True)


@dataclass(frozen=True)
class Plans:
    """What the memory estimate decided for this job (:mod:`hsd.training.memory`), in the manifest."""

    ds_choice: Optional[DsChoice]  # train.ds_config auto's stage; None for a named config
    checkpointing: CheckpointPlan  # train.gradient_checkpointing: which layers recompute


def _train(accelerator: Any, plans: Plans, cfg: Config, run: Path, newest: Optional[str], data_dir: Optional[str],
           held: list[RunDirectory], phases: Phases) -> Path:
    from hsd.training import ftdata
    from hsd.training.loop import TrainLog, setup, train_loop

    start = time.perf_counter()
    if data_dir:
        data = Path(data_dir)
    else:
        with phases("ftdata"):
            data = main_only(lambda: ftdata.run(cfg, run / "ftdata"))
    s = setup(accelerator, cfg, data, plans.checkpointing.recompute, phases)
    with phases("resume"):
        state = _resume(accelerator, newest)
    _start_manifest(accelerator, cfg, run, data, s, state, plans)
    log = TrainLog(run / LOG, accelerator.is_main_process, state.step, _tracking(accelerator, cfg, run, state))
    try:
        outcome = train_loop(accelerator, s, cfg, state, log, run, phases)
    finally:
        log.close()
    _finish(accelerator, cfg, run, s, state, outcome, time.perf_counter() - start, held, phases)
    return run


def _tracking(accelerator: Any, cfg: Config, run: Path, state: Any) -> Any:
    """The run's trackers (``train.report_to``), named after the run and grouped by the experiment;
    the hyperparameters are the resolved config."""
    from hsd import tracking
    from hsd.config import to_dict

    info = tracking.RunInfo(run, cfg.experiment, purge_step=state.step + 1 if state.step else None)
    return tracking.start_with_accelerator(accelerator, info, to_dict(cfg))


def _agree_run_dir(cfg: Config, run_dir: Optional[str | Path]) -> Path:
    """The run directory; a default name (with a timestamp) is chosen by rank 0 for all."""
    if run_dir is not None:
        return Path(run_dir).resolve()
    if cfg.run_name:  # a named run is created or resumed
        return main_only(lambda: make_run_dir(cfg.results_dir, cfg.experiment, cfg.run_name))
    # A default (timestamped) name is always a new directory, even for two runs in one second.
    name = f"train_{cfg.train.format}_{timestamp()}"
    return main_only(lambda: new_run_dir(cfg.results_dir, cfg.experiment, name))


def run(cfg: Config, run_dir: Optional[str | Path] = None, data_dir: Optional[str | Path] = None) -> Path:
    """Train (or resume) into ``run_dir``; returns it. Every rank of the job calls this."""
    import torch

    from hsd import distributed
    from hsd.training.accel import checkpointing, make_accelerator, release

    quiet_known_noise()  # jobs call this directly, not through the CLI
    phases = Phases()  # where this attempt's time goes up to its first step (manifest phases_s)
    age = process_age_s()
    if age is not None:  # interpreter, imports (torch): part of the wait for the first step
        phases.add("start_up", age)
    if data_dir is not None:  # fail in a second, before DeepSpeed and the model load
        for part in ("train", "eval"):
            read_chat_jsonl(Path(data_dir) / cfg.train.format / f"{part}.jsonl")
    kind = "cuda" if torch.cuda.is_available() and cfg.model.device != "cpu" else "cpu"
    env = distributed.init_distributed(kind, always=True,  # DeepSpeed needs a group, even of one
                                       peer_timeout_s=cfg.distributed.peer_timeout_s)
    held: list[RunDirectory] = []  # rank 0's; the others learn only its decisions
    ok, run = False, None
    try:
        run = _agree_run_dir(cfg, run_dir)
        # Claimed before DeepSpeed starts: a refusal comes in a second and changes nothing.
        if not main_only(lambda: _claim(cfg, run, held)):
            with phases("accelerator"):  # DeepSpeed's plugin, the memory plans
                accelerator, choice = make_accelerator(cfg, env, project_dir=run)
                plans = Plans(choice, checkpointing(cfg, accelerator.state.deepspeed_plugin.deepspeed_config, env))
            newest = main_only(lambda: _begin(cfg, held[0], env.world_size))
            _train(accelerator, plans, cfg, run, newest, str(data_dir) if data_dir else None, held, phases)
        distributed.barrier()
        ok = True
    except BaseException as exc:
        cause = distributed.announce_failure(exc)  # the other ranks stop now, not at the collective timeout
        if not isinstance(exc, SystemExit):  # the preemption exit: its manifest already says PREEMPTED
            for held_run in held:
                held_run.fail(cause)
        if cause is not exc:  # this error only echoes another rank's failure: report that one
            raise cause from exc
        raise
    finally:
        for held_run in held:
            held_run.release()
        release()
        distributed.teardown(env, ok)
    return run
