"""``hsd validate --config F [--run-dir D] [overrides]``: one resumable validation run.

data -> prompts -> inference backend -> per-rank shard files -> (rank 0) merge -> seed files.

Every rank evaluates a disjoint, deterministic share of the samples (sorted by id, every
``world_size``-th) and appends its records after every batch, so a killed or preempted run
restarted on the same directory redoes only what was not written — even with another world
size. Rank 0 owns the run directory: lock, resolved ``config.yaml`` (a resume with a config
that would change the results is refused), ``validation_log_<ts>.log``, ``manifest.json``,
and at the end the merged outputs, after checking every sample was recorded exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsd import distributed as dist
from hsd import prompt_files, runs
from hsd.config import Config, ReportConfig
from hsd.errors import HsdError
from hsd.phases import Phases, process_age_s
from hsd.inference import get_backend, prompt_ids, store
from hsd.inference.base import GenerationSettings
from hsd.inference.batching import length_sorted_batches
from hsd.inference.modes import GenerateMode, get_mode
from hsd.progress import Progress
from hsd.records import Record, Sample
from hsd.noise import quiet_known_noise
from hsd.rundir import ConfigCheck, RunDirectory
from hsd.runs import Status

log = logging.getLogger("hsd.recipes.validate")

# A resumed run must not mix two settings, so every key of these sections must equal the first
# attempt's (seed, sampling, backend, mode, model, adapter, prompt, data selection, ...), except
# the few that change only how fast the same records are produced.
CHECK = ConfigCheck(sections=("data", "prompt", "model", "inference"), free=frozenset({
    "inference.batch_size", "inference.slots", "inference.prefix_cache", "inference.static_cache", "inference.cuda_graphs",
    "inference.progress", "inference.ds_config", "model.attn_implementation", "model.experts_implementation",
    "model.compile_attention", "model.compile_experts",
}))


@dataclass(frozen=True)
class RunSetup:
    """What rank 0 decided about the run directory, shared with every rank."""

    path: Path
    ts: str  # the <ts> of every output file name; kept across resumes
    attempt: int  # 0: nothing to do, the completed run is left exactly as it was


@dataclass(frozen=True)
class RankStats:
    rank: int
    evaluated: int
    seconds: float  # model load excluded: this is what samples/s is computed from
    phases: dict[str, float]  # this rank's model build, tokenize, first output, generation


def run(cfg: Config, run_dir: Path | None = None) -> Path:
    """Evaluate ``cfg``'s samples into a run directory (new, or resumed); return its path."""
    from hsd.models.loader import resolve_device

    quiet_known_noise()  # jobs call this directly, not through the CLI
    started = time.time()
    kind = "cuda" if resolve_device(cfg.model).startswith("cuda") else "cpu"
    with dist.session(kind, peer_timeout_s=cfg.distributed.peer_timeout_s) as env:  # binds this rank's GPU
        return _run(cfg, run_dir, env, started)


def _run(cfg: Config, run_dir: Path | None, env: dist.DistEnv, started: float) -> Path:
    from hsd.data import select
    from hsd.models.loader import check_adapter, load_tokenizer
    from hsd.prompts import Prompter

    phases = Phases()
    age = process_age_s()
    if age is not None:  # interpreter, imports (torch), process group and device: part of the job's wait
        phases.add("start_up", age)
    t_setup = time.perf_counter()
    mode = get_mode(cfg)  # generate | score (hsd.inference.modes); a bad threshold_from fails here, early
    get_backend(cfg.inference.backend)  # an unknown name fails here, before a run directory exists
    selection = select(cfg.data)
    samples = selection.samples
    _check_unique_ids(samples)
    tokenizer = load_tokenizer(cfg.model)
    if cfg.model.adapter is not None:  # before the run directory exists: a typo must leave nothing behind
        check_adapter(cfg.model.adapter)
    prompter = Prompter.from_config(cfg, tokenizer, {s.id for s in samples})
    with ExitStack() as stack:
        _attach_log_handler(stack, logging.StreamHandler(sys.stderr), env.rank)
        held: list[RunDirectory] = []  # rank 0's; the others learn the decision only
        setup = dist.main_only(lambda: _prepare_run(cfg, run_dir, prompter.strategy, env, stack, samples, held))
        if setup.attempt == 0:
            log.info("%s is complete and every sample is recorded: nothing to do", setup.path)
            return setup.path
        # Leaving the stack with an error records FAILED or INTERRUPTED (hsd.rundir), not RUNNING.
        done = store.recorded_ids(setup.path)
        mine = shard_for_rank(samples, env.rank, env.world_size, done)
        log.info("rank %d/%d: %d samples to evaluate (%d of %d already recorded)",
                 env.rank, env.world_size, len(mine), len(done), len(samples))
        phases.add("setup", time.perf_counter() - t_setup)  # data, tokenizer, prompts, run directory
        stats = _evaluate(cfg, env, tokenizer, prompter, setup.path, mine, mode)
        all_stats = dist.gather(stats)  # also the barrier before merging
        if held:
            phases.seconds.update(stats.phases)
            _finish(cfg, setup, held[0], selection, prompter.strategy, all_stats, len(done), started, phases)
    return setup.path


def _check_unique_ids(samples: list[Sample]) -> None:
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise HsdError(f"sample id {s.id!r} appears twice in the selected data; ids must be unique "
                           "(field original_id) because resume skips samples by id")
        seen.add(s.id)


def shard_for_rank(samples: list[Sample], rank: int, world_size: int, done: set[str]) -> list[Sample]:
    """This rank's not-yet-recorded samples: every ``world_size``-th by id, independent of batch size."""
    ordered = sorted(samples, key=lambda s: s.id)
    return [s for i, s in enumerate(ordered) if i % world_size == rank and s.id not in done]


def _prepare_run(cfg: Config, run_dir: Path | None, strategy: str, env: dist.DistEnv, stack: ExitStack,
                 samples: list[Sample], held: list[RunDirectory]) -> RunSetup:
    """Rank 0: claim the run directory (refusals change nothing), then begin an attempt unless
    the run is complete with every sample recorded."""
    ts = runs.timestamp()
    if run_dir is None:
        if cfg.run_name:  # a named run is created or resumed
            path = runs.run_dir(cfg.results_dir, cfg.experiment, cfg.run_name)
        else:  # a default name is always a new directory, even for two runs started in one second
            name = f"validate_{re.sub(r'[^A-Za-z0-9._-]', '-', strategy)}_{ts}"
            path = runs.new_run_dir(cfg.results_dir, cfg.experiment, name)
    else:
        path = Path(run_dir)
    run = stack.enter_context(RunDirectory(path, "validate", CHECK).claim(cfg))
    recorded = store.recorded_ids(run.path)  # a corrupt shard line stops the run here, before anything changes
    if run.status is Status.COMPLETED and recorded >= {s.id for s in samples}:
        return RunSetup(path=run.path, ts=run.manifest.get("ts", ts), attempt=0)
    held.append(run)
    ts = run.begin(cfg, env.world_size, ts, strategy=strategy)
    log_file = run.path / f"validation_log_{ts}.log"  # appended to by every attempt
    _attach_log_handler(stack, logging.FileHandler(log_file, encoding="utf-8"), env.rank)
    log.info("run directory %s (attempt %d, world size %d)", run.path, run.attempt, env.world_size)
    for shard in store.shard_files(run.path):  # nobody writes before the broadcast that follows
        if store.truncate_torn_tail(shard):
            log.warning("%s: dropped a torn last line; that sample will be redone", shard)
    return RunSetup(path=run.path, ts=ts, attempt=run.attempt)


def _attach_log_handler(stack: ExitStack, handler: logging.Handler, rank: int) -> None:
    """Route the ``hsd`` loggers (validate, inference, ...) to ``handler`` until the run ends."""
    root = logging.getLogger("hsd")
    handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"))
    if root.level == logging.NOTSET or root.level > logging.INFO:
        stack.callback(root.setLevel, root.level)
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    stack.callback(handler.close)
    stack.callback(root.removeHandler, handler)


def generation_settings(cfg: Config, params: Any) -> GenerationSettings:
    """The prompter's parameters (template values with ``inference`` overrides already applied)
    plus ``inference.min_new_tokens``, which only benchmarks set."""
    return GenerationSettings(max_new_tokens=int(params.max_new_tokens), temperature=float(params.temperature),
                              top_p=float(params.top_p), min_new_tokens=cfg.inference.min_new_tokens)


def _evaluate(cfg: Config, env: dist.DistEnv, tokenizer: Any, prompter: Any,
              run_path: Path, mine: list[Sample], mode: Any) -> RankStats:
    """Generate for this rank's samples, longest prompts first, appending as samples finish."""
    from tqdm.auto import tqdm

    backend_cls = get_backend(cfg.inference.backend)
    if not mine and not backend_cls.collective:  # nothing left: do not load a 40 GB model to do nothing
        return RankStats(env.rank, 0, 0.0, {})
    phases = Phases()
    with phases("model"):  # build or load, move to the device, compile set-up
        backend = backend_cls(cfg, env.device, env.rank, tokenizer)
    settings = generation_settings(cfg, prompter.generation)
    with phases("tokenize"):  # render (the shared prefix stored once), then the token ids batching and the backend use
        rendered = render_splits(mode, prompter, mine)
        prompt_files.write_prefixes(run_path, rendered)  # before any record names them
        prompts = [p.text for p in rendered]
        ids = prompt_ids.token_ids(tokenizer, rendered)  # the shared head tokenized once per prefix
        batches = length_sorted_batches([s.id for s in mine], [len(i) for i in ids], cfg.inference.batch_size)
    show = cfg.inference.progress and sys.stderr.isatty()
    started = time.perf_counter()
    progress = Progress(f"validate rank {env.rank}", len(mine), cfg.report.progress_every_s, log.info)
    with store.ShardWriter(run_path, env.rank) as writer, \
            tqdm(total=len(mine), position=env.rank, desc=f"rank {env.rank}", disable=not show) as bar:
        t0, done = time.perf_counter(), 0
        for group in mode.stream(backend, prompts, settings, batches, prompt_ids=ids):  # a batch, or a step's rows
            if "first_output" not in phases.seconds:  # warm-up, graph capture and the first rows' decode
                phases.add("first_output", time.perf_counter() - started)
            per_sample = (time.perf_counter() - t0) / len(group)  # the time since the last group, shared
            writer.append(make_record(mine[i], rendered[i], out, prompter.strategy, per_sample, env.rank, mode.judge)
                          for i, out in group)
            bar.update(len(group))
            done += len(group)
            progress.update(done)
            t0 = time.perf_counter()
    backend.finish()  # a collective backend (ZeRO-3) joins the other ranks' remaining batches
    seconds = time.perf_counter() - started
    phases.add("generation", seconds)
    return RankStats(env.rank, len(mine), seconds, phases.seconds)


def render_split(mode: Any, prompter: Any, sample: Sample) -> prompt_files.SplitPrompt:
    """The mode's prompt for ``sample`` as the prefix shared with other samples + the sample's tail
    (:mod:`hsd.prompt_files`): found by rendering the sample once more with a sentinel as its text."""
    return prompt_files.split_prompt(mode.render(prompter, sample), _probe(mode, prompter, sample))


def render_splits(mode: Any, prompter: Any, samples: list[Sample]) -> list[prompt_files.SplitPrompt]:
    """:func:`render_split` of each sample, the sentinel probe rendered once per distinct value of the
    other fields a template can see (``{target_group}``, ``{persona_tag}``, ``{source}``).

    Why that is the same split: :class:`hsd.prompts.Prompter` reads a sample only through
    :func:`hsd.prompts.template.placeholder_values` (its few-shot examples are chosen once, from
    the evaluated ids as a set; the system prompt is fixed; the date is pinned), and both modes
    render through it, so two probes that differ only outside those fields are the same string.
    Should a prompter ever read more, exactness still holds: :func:`prompt_files.split_prompt`
    keeps the whole prompt as the tail when it does not start with the probe's prefix."""
    from hsd.prompts.template import placeholder_values

    probes: dict[tuple[tuple[str, str], ...], str] = {}
    out = []
    for sample in samples:
        key = tuple(sorted((k, v) for k, v in placeholder_values(sample).items() if k != "text"))
        if key not in probes:
            probes[key] = _probe(mode, prompter, sample)
        out.append(prompt_files.split_prompt(mode.render(prompter, sample), probes[key]))
    return out


def _probe(mode: Any, prompter: Any, sample: Sample) -> str:
    return mode.render(prompter, dataclasses.replace(sample, text=prompt_files.SENTINEL))


def make_record(sample: Sample, prompt: prompt_files.SplitPrompt, out: Any, strategy: str, latency_s: float, rank: int,
                judge: Any = None) -> Record:
    """``judge(out)`` (the mode's, :mod:`hsd.inference.modes`) decides label, rationale and status;
    the record keeps the prompt's tail and names its prefix file (written by :func:`_evaluate`)."""
    j = (judge or GenerateMode(None).judge)(out)
    return Record(
        sample_id=sample.id, text=sample.text, true_label=sample.label, target_group=sample.target_group,
        persona_tag=sample.persona_tag, source=sample.source, strategy=strategy,
        prompt_hash=prompt_files.prompt_hash(prompt.text), raw_response=j.raw_response,
        predicted_label=j.predicted_label, rationale=j.rationale, parse_status=j.parse_status,
        latency_s=round(latency_s, 4), rank=rank, p_hate=j.p_hate, prompt_tokens=out.prompt_tokens,
        new_tokens=out.new_tokens, stop_reason=out.stop_reason,
        prompt_prefix_hash=prompt.prefix_hash, prompt_tail=prompt.tail,
    )


def _finish(cfg: Config, setup: RunSetup, run: RunDirectory, selection: Any, strategy: str,
            stats: list[RankStats], resumed: int, started: float, phases: Phases) -> None:
    """Rank 0: merge shards (each sample exactly once), write outputs, complete the manifest."""
    with phases("merge_reports"):
        records = store.merge(setup.path, [s.id for s in selection.samples])
        meta = {**report_meta(cfg, setup, len(stats)), **empty_text_meta(selection)}
        outputs = write_outputs(setup.path, records, strategy, setup.ts, meta, cfg.report)
    evaluated = sum(s.evaluated for s in stats)
    gen_seconds = max(s.seconds for s in stats)
    run.end(
        Status.COMPLETED, world_size=len(stats),
        samples=len(records), evaluated_this_attempt=evaluated, resumed=resumed,
        per_rank={str(s.rank): s.evaluated for s in stats}, wall_time_s=round(time.time() - started, 2),
        generation_s=round(gen_seconds, 2), phases_s=phases.rounded(),
        samples_per_s=round(evaluated / gen_seconds, 3) if gen_seconds > 0 else None,
        outputs=sorted(p.name for p in outputs), **get_mode(cfg).manifest(), **_mxfp4_load(cfg),
        empty_text_skipped=list(selection.empty_text_skipped),
    )
    log.info("merged %d records (%d evaluated now, %d resumed) into %s", len(records), evaluated, resumed, setup.path)
    log.info("where the time went (rank 0): %s", phases.summary())
    _track(cfg, setup.path)


def _track(cfg: Config, path: Path) -> None:
    """The run's metrics, as its reports state them, to ``report.report_to``'s trackers (:mod:`hsd.tracking`)."""
    from hsd import tracking
    from hsd.config import to_dict
    from hsd.reporting.tracked import log_to_trackers, validation_values

    names = tracking.report_trackers(cfg)
    metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    log_to_trackers(names, path, cfg.experiment, to_dict(cfg), validation_values(metrics))


def _mxfp4_load(cfg: Config) -> dict[str, Any]:
    """An MXFP4 checkpoint: how rank 0 loaded it (kept MXFP4, or dequantized by whom and why)."""
    from hsd.models.mxfp4_load import record_for

    record = record_for(cfg.model.name_or_path)
    return {"mxfp4_load": record} if record else {}


def report_meta(cfg: Config, setup: RunSetup, world_size: int) -> dict[str, Any]:
    """The header of the evaluation report: what was evaluated, how, and where."""
    m, d, p = cfg.model, cfg.data, cfg.prompt
    return {
        "model": m.name_or_path + (f" + adapter {m.adapter}" if m.adapter else ""),
        "template": p.template + (f" (strategy {p.strategy})" if p.strategy else ""),
        "data": f"{d.subset or d.split} (max_samples {d.max_samples}, seed {d.seed})",
        "command": " ".join(sys.argv),
        "run_dir": str(setup.path),
        "world_size": world_size,
        "reasoning_effort": p.reasoning_effort,
        "backend": cfg.inference.backend,
    }


def empty_text_meta(selection: Any) -> dict[str, str]:
    """The report's line for rows left out because their text is empty (data.empty_text: skip)."""
    skipped = selection.empty_text_skipped
    if not skipped:
        return {}
    return {"Skipped rows": f"{len(skipped)} rows with empty text skipped in {selection.path.name} "
                            f"({', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''})"}


def write_outputs(run_path: Path, records: list[Record], strategy: str, ts: str, meta: dict,
                  report: ReportConfig) -> list[Path]:
    """The seed-compatible files (CSVs, report, merged intermediate_results) + metrics.json."""
    from hsd.reporting.seed_files import write_run_outputs

    return write_run_outputs(run_path, records, strategy, ts, meta, report.top_errors, report)
