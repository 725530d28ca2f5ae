"""Generate with continuous refill: a fixed number of slots, each refilled as its sample finishes.

Why (issue 17, measured shapes in ../shared/notes/measured-2xh200.md): a static batch runs until
its longest row, and the rich prompt's reasoning lengths vary ten-fold (p10 ~500, p90 ~1,500
characters), so most rows of a batch sit idle most of the time; and every batch prefilled the
~1,724 prompt tokens all samples share. :class:`RefillDecoder` instead

* computes the shared token prefix of all prompts once (:class:`~hsd.gptoss.slotcache.SlotCache`
  keeps its KV once and every row attends to it without a copy);
* keeps ``rows`` slots decoding (``inference.slots``, or as many as fit in GPU memory); when a
  row stops (stop token, or its own token limit) the sample is handed back at once and, once
  ``rows // ADMIT_EVERY`` slots are free, the next samples' tails are prefilled into the free
  slots (eager forwards of up to ADMIT_CHUNK rows at shapes that repeat: a refill per freed row
  would cost a full forward each);
* decodes with one fixed-shape step (every slot, one token, each at its own position) that is
  captured as a CUDA graph once and replayed across refills;
* once nothing is left to admit, halves the step as rows finish (the running rows move into the
  lower slots; a graph per size, captured up front), so the drain at the end of a run does not pay
  for hundreds of steps of mostly idle rows.

Greedy outputs equal the plain path's (``tests/integration/test_refill.py``): every sample sees
exactly its own prompt at positions ``0..n-1``, as in an unpadded batch of one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import torch

from hsd.gptoss.slotcache import SlotCache, SlotShape
from hsd.inference.graph_decoder import CACHE_ROUND
from hsd.inference.label_scores import gather
from hsd.inference.sampling import Sampling, select_tokens
from hsd.inference.score import MIN_SHARED_PREFIX, common_prefix_len, decoder_and_head

log = logging.getLogger("hsd.inference.refill")

ADMIT_EVERY = 8  # admit new samples once rows // ADMIT_EVERY slots (at least 1) are free
# Once no sample is left to admit, the step shrinks to the rows still running (halving, down to
# min(MIN_STEP_ROWS, rows // SHRINK_FLOOR)): call 3 in BENCHMARKS.md had 53% of its slot-steps
# idle, mostly in this drain, and a step of 16 rows costs less than one of 64 (tools/refill_probe.py).
SHRINK_FLOOR = 8
MIN_STEP_ROWS = 16
# Admit prefills run in chunks of at most ADMIT_CHUNK rows, each tail right-padded to a multiple
# of WIDTH_ROUND tokens, and (while samples remain queued) a multiple of ADMIT_ROUND rows is
# admitted: a prefill of 512 rows at once needed ~25 GiB of transient attention memory, and
# shapes that repeat let the allocator and kernels' first-use work be paid once (a second pass
# over the same admit shapes took 0.10 s per admit instead of 0.23 s, tools/refill_probe.py).
ADMIT_CHUNK = 64
ADMIT_ROUND = 8
WIDTH_ROUND = 16
# inference.slots unset: as many slots as fit beside the model, at most AUTO_MAX_SLOTS (of 256 /
# 512 / 768 on one H200, 512 was fastest over the 1,009-sample test split, tools/refill_probe.py),
# leaving AUTO_RESERVE_GIB for the admit chunks, the CUDA-graph pools and the prefix (measured
# ~4.7 GiB beside the KV at 512 slots) and SLOT_MARGIN on each slot's KV.
AUTO_MAX_SLOTS = 512
AUTO_RESERVE_GIB = 6.0
SLOT_MARGIN = 1.15


@dataclass(frozen=True)
class Job:
    """One sample: its prompt's token ids (no padding) and its limits on new tokens."""

    index: int
    ids: tuple[int, ...]
    max_new: int
    min_new: int = 0


@dataclass(frozen=True)
class Finished:
    index: int
    tokens: list[int]  # new tokens, up to and including the stop token (its only one) if one ended it
    label_logits: Optional[torch.Tensor] = None  # (new tokens, K) on the CPU: the recorded label logits (``record``)


def shared_prefix(jobs: Sequence[Job]) -> tuple[int, ...]:
    """The longest token prefix of every prompt that leaves each at least one token of its own."""
    n = common_prefix_len([j.ids for j in jobs], 1)
    return tuple(jobs[0].ids[:n]) if n >= MIN_SHARED_PREFIX else ()


class RefillDecoder:
    """Slots refilled as samples finish; the shared prefix once; a CUDA-graph decode step."""

    def __init__(self, model: Any, cuda_graphs: bool = True, reuse_prefix: bool = True,
                 admit_every: int = ADMIT_EVERY) -> None:
        self.model = model
        self.decoder, self.lm_head = decoder_and_head(model)
        self.device = self.lm_head.weight.device
        self.use_graph = cuda_graphs and self.device.type == "cuda"
        self.reuse_prefix = reuse_prefix
        self.admit_every = admit_every
        self.cache: Optional[SlotCache] = None
        self.prefix_ids: tuple[int, ...] = ()
        self.graphs: dict[int, tuple[Any, torch.Tensor]] = {}  # decode rows -> (CUDA graph, its logits)
        self.stats: dict[str, float] = {}  # of the last run: where its time went (HFBackend.refill_report)
        self.rows = 0  # slots of the last run
        self.fitted: tuple[int, int, int] = (0, 0, 0)  # (cache length, prefix, rows) of rows_that_fit
        self.capture_all = False  # every decode size at the first step (HFBackend.reserve: a benchmark's warm-up)

    def run(self, jobs: Sequence[Job], s: Sampling, rows: Optional[int],
            record: Optional[torch.Tensor] = None) -> Iterator[list[Finished]]:
        """Yield the samples finished at each step (in order of finishing) until all are done.

        ``rows``: slots decoding at once; None sizes them by free GPU memory (:meth:`rows_that_fit`).
        ``record``: token ids whose logits each step keeps per row (hsd.inference.label_scores)."""
        if not jobs:
            return
        prefix = shared_prefix(jobs) if self.reuse_prefix else ()
        need = max(len(j.ids) for j in jobs) + max(s.reserve_new, max(j.max_new for j in jobs))
        length = -(-need // CACHE_ROUND) * CACHE_ROUND
        rows = min(rows or self.rows_that_fit(length, len(prefix)), len(jobs))
        self.rows = rows  # what this run uses (an out-of-memory retry halves it)
        with torch.inference_mode():
            t0 = time.perf_counter()
            self._prepare(SlotShape(rows, length, len(prefix)), prefix)
            # prepare_s: the cache and the shared prefix's forward; capture_s: the decode graphs
            # (both 0 when a run of the same shape already built them)
            self.stats = {"steps": 0, "busy_row_steps": 0, "row_steps": 0, "shrinks": 0, "admits": 0,
                          "admitted": 0, "admit_s": 0.0, "prepare_s": round(time.perf_counter() - t0, 3),
                          "capture_s": 0.0}
            yield from _Run(self, jobs, s, record).loop()
        log.info("refill: %d slots, shared prefix %d tokens; %s", rows, len(prefix),
                 ", ".join(f"{k} {round(v, 2) if isinstance(v, float) else v}" for k, v in self.stats.items()))

    def rows_that_fit(self, length: int, prefix: int) -> int:
        """Slots whose KV fits in what the GPU has free (this decoder's own cache counted as free),
        at most AUTO_MAX_SLOTS; off CUDA, AUTO_MAX_SLOTS. Decided once per cache length and prefix,
        so a second run of the same shape (a benchmark's timed run after its warm-up) reuses the
        cache and its captured graphs."""
        if self.device.type != "cuda":
            return AUTO_MAX_SLOTS
        if self.fitted[:2] == (length, prefix):
            return self.fitted[2]
        self.release()  # an old cache of another shape would count as used
        free, _ = torch.cuda.mem_get_info(self.device)
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        per_slot = SlotCache.bytes_per_slot(self.model.config, length, prefix, self.lm_head.weight.dtype) * SLOT_MARGIN
        rows = max(1, min(AUTO_MAX_SLOTS, int((free - AUTO_RESERVE_GIB * 2**30) // per_slot)))
        self.fitted = (length, prefix, rows)
        return rows

    def release(self) -> None:
        """Drop the cache and graphs (after an out-of-memory error, or before sizing a new cache by
        free memory; the next run rebuilds them)."""
        self.cache, self.graphs, self.prefix_ids = None, {}, ()

    # ------------------------------------------------------------------ set-up

    def _prepare(self, shape: SlotShape, prefix: tuple[int, ...]) -> None:
        if self.cache is None or self.cache.shape != shape:
            self.cache, self.graphs = None, {}  # free the old ones first
            dtype = self.lm_head.weight.dtype
            self.cache = SlotCache(self.model.config, shape, dtype, self.device)
            self.prefix_ids = ()
            self.tok = torch.zeros(shape.rows, 1, dtype=torch.long, device=self.device)
            self.advance = torch.zeros(shape.rows, 1, dtype=torch.long, device=self.device)
        self.cache.pos.fill_(shape.length - 1)  # idle slots write to a column no sample reads before writing it
        self.advance.zero_()
        if prefix and prefix != self.prefix_ids:
            from transformers import DynamicCache

            full = DynamicCache()  # no config: every layer keeps all columns (sliding ones included)
            self.decoder(input_ids=torch.tensor([prefix], device=self.device), past_key_values=full,
                         use_cache=True)  # a plain forward: exact as any prefill
            self.cache.set_prefix(full)
            self.prefix_ids = prefix
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # its time is prepare_s, not the first admit's

    # ------------------------------------------------------------------ forwards

    def admit_logits(self, slots: list[int], tails: list[tuple[int, ...]]) -> torch.Tensor:
        """Prefill the tails (right-padded) into ``slots``; next-token logits per admitted row."""
        cache, p = self.cache, self.cache.shape.prefix
        width = min(-(-max(len(t) for t in tails) // WIDTH_ROUND) * WIDTH_ROUND, cache.shape.length - p)
        ids = torch.zeros(len(tails), width, dtype=torch.long)
        for i, t in enumerate(tails):
            ids[i, : len(t)] = torch.tensor(t)
        positions = (torch.arange(width) + p).expand(len(tails), -1).to(self.device)
        cache.admit_mode(torch.tensor(slots, device=self.device), positions)
        h = self.decoder(input_ids=ids.to(self.device), attention_mask=cache.masks(positions),
                         position_ids=positions, past_key_values=cache, use_cache=True,
                         hsd_prefix=cache).last_hidden_state
        last = torch.tensor([len(t) - 1 for t in tails], device=self.device)
        return self.lm_head(h[torch.arange(len(tails), device=self.device), last]).float()

    def sizes(self) -> list[int]:
        """The decode step's row counts: all slots, then halves down to the floor (see MIN_STEP_ROWS)."""
        rows = self.cache.shape.rows
        out, floor = [rows], max(1, min(MIN_STEP_ROWS, rows // SHRINK_FLOOR))
        while out[-1] // 2 >= floor:
            out.append(out[-1] // 2)
        return out

    def _forward_step(self, n: int) -> torch.Tensor:
        cache = self.cache
        cache.decode_mode()
        cache.n = n
        pos = cache.pos[:n]
        h = self.decoder(input_ids=self.tok[:n], attention_mask=cache.masks(pos), position_ids=pos,
                         past_key_values=cache, use_cache=True,
                         hsd_prefix=cache).last_hidden_state  # its prefix, and the sliding windows' starts
        pos.add_(self.advance[:n])
        return self.lm_head(h[:, -1]).float()

    def step_logits(self, n: int) -> torch.Tensor:
        """One decode step for slots [0, n) (eager on CPU; on GPU a CUDA graph per size in
        :meth:`sizes`, captured when a run first steps at that size and replayed by later runs;
        with :attr:`capture_all` every size at the first step, as a benchmark's warm-up wants)."""
        if not self.use_graph:
            return self._forward_step(n)
        if n not in self.graphs:
            self._capture(self.sizes() if self.capture_all and not self.graphs else [n])
        graph, logits = self.graphs[n]
        graph.replay()
        return logits

    def _capture(self, sizes: list[int]) -> None:
        """Capture the decode step at each of ``sizes`` (its time is added to ``capture_s``). Why
        lazily: a run whose rows all finish together (fixed lengths) never steps below all slots,
        and each capture costs a warm-up forward plus the capture (BENCHMARKS.md, issue 29)."""
        t0 = time.perf_counter()
        pos = self.cache.pos.clone()
        for size in sizes:  # warm up on a side stream (lazy set-up stays out of the graph), capture
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._forward_step(size)
            torch.cuda.current_stream().wait_stream(side)
            self.cache.pos.copy_(pos)  # the warm-up advanced it; its writes are rewritten by the replay
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self._forward_step(size)
            self.graphs[size] = (graph, logits)
            self.cache.pos.copy_(pos)
        torch.cuda.synchronize(self.device)
        self.stats["capture_s"] = round(self.stats.get("capture_s", 0.0) + time.perf_counter() - t0, 3)


class _Run:
    """The state of one :meth:`RefillDecoder.run`: which job is in which slot, tokens so far."""

    def __init__(self, dec: RefillDecoder, jobs: Sequence[Job], s: Sampling, record: Optional[torch.Tensor]) -> None:
        self.dec, self.jobs, self.s, self.record = dec, list(jobs), s, record
        rows, dev = dec.cache.shape.rows, dec.device
        self.queue = list(range(len(jobs)))[::-1]  # pop() takes the next job
        self.slot_job: list[Optional[int]] = [None] * rows
        self.stops = torch.tensor(s.stop_ids, device=dev)
        self.out = torch.full((rows, max(j.max_new for j in jobs)), s.pad_id, dtype=torch.long, device=dev)
        # per row and step the recorded logits: a few floats, gathered on the device (no vocabulary copy)
        self.kept = None if record is None else torch.zeros(rows, self.out.shape[1], record.numel(), device=dev)
        self.steps = torch.zeros(rows, dtype=torch.long, device=dev)
        self.max_new = torch.ones(rows, dtype=torch.long, device=dev)
        self.min_new = torch.zeros(rows, dtype=torch.long, device=dev)
        self.active = torch.zeros(rows, dtype=torch.bool, device=dev)
        self.admit_at = max(1, rows // dec.admit_every)
        self.sizes = dec.sizes()
        self.n = rows  # the decode step covers slots [0, n)

    def loop(self) -> Iterator[list[Finished]]:
        done = self._admit()
        while True:
            if done:
                yield done
            free = self.slot_job.count(None)
            if self.queue and (free >= self.admit_at or free == len(self.slot_job)):
                done = self._admit()
                continue
            if free == len(self.slot_job):
                return
            busy = len(self.slot_job) - free
            while not self.queue and self.n in self.sizes[:-1] and busy <= self.n // 2:
                self._shrink()
            st = self.dec.stats
            st["steps"], st["busy_row_steps"], st["row_steps"] = st["steps"] + 1, st["busy_row_steps"] + busy, \
                st["row_steps"] + self.n
            done = self._record(self.dec.step_logits(self.n), torch.arange(self.n, device=self.dec.device))

    def _shrink(self) -> None:
        """Halve the decode step: the running rows of the upper half move into free lower slots."""
        half = self.n // 2
        src = [i for i in range(half, self.n) if self.slot_job[i] is not None]
        dst = [i for i in range(half) if self.slot_job[i] is None][: len(src)]
        if src:
            self.dec.cache.move_rows(src, dst)
            s, d = (torch.tensor(x, device=self.dec.device) for x in (src, dst))
            for t in (self.out, self.steps, self.max_new, self.min_new, self.active, self.dec.tok, self.dec.advance,
                      *([] if self.kept is None else [self.kept])):
                t[d] = t[s]
            for i, j in zip(src, dst):
                self.slot_job[j], self.slot_job[i] = self.slot_job[i], None
        self.n = half
        self.dec.stats["shrinks"] += 1

    def _admit(self) -> list[Finished]:
        """Prefill the next jobs into the free slots; their first tokens are chosen right away."""
        t0 = time.perf_counter()
        free = [i for i, j in enumerate(self.slot_job) if j is None]
        count = min(len(free), len(self.queue))
        if count < len(self.queue) and count >= ADMIT_ROUND:  # more will follow: a repeating row count
            count -= count % ADMIT_ROUND
        slots, picked = free[:count], [self.queue.pop() for _ in range(count)]
        p = self.dec.cache.shape.prefix
        tails = [self.jobs[k].ids[p:] for k in picked]
        for slot, k in zip(slots, picked):
            self.slot_job[slot] = k
        idx = torch.tensor(slots, device=self.dec.device)
        logits = torch.cat([self.dec.admit_logits(slots[i : i + ADMIT_CHUNK], tails[i : i + ADMIT_CHUNK])
                            for i in range(0, count, ADMIT_CHUNK)])
        self.steps[idx] = 0
        self.max_new[idx] = torch.tensor([self.jobs[k].max_new for k in picked], device=self.dec.device)
        self.min_new[idx] = torch.tensor([self.jobs[k].min_new for k in picked], device=self.dec.device)
        self.dec.cache.pos[idx, 0] = torch.tensor([p + len(t) for t in tails], device=self.dec.device)
        self.active[idx] = True
        self.dec.advance[idx, 0] = 1
        done = self._record(logits, idx)  # ends in a host sync: the admit's time is measured whole
        st = self.dec.stats
        st["admits"], st["admitted"] = st["admits"] + 1, st["admitted"] + count
        st["admit_s"] += time.perf_counter() - t0
        return done

    def _record(self, logits: torch.Tensor, idx: torch.Tensor) -> list[Finished]:
        """Choose the next token of rows ``idx``, store it, and hand back the rows that finished."""
        steps = self.steps[idx]
        tok = select_tokens(logits, self.s, steps < self.min_new[idx], self.stops)
        active = self.active[idx]
        tok = torch.where(active, tok, torch.full_like(tok, self.s.pad_id))
        at = steps.clamp(max=self.out.shape[1] - 1)
        self.out[idx, at] = torch.where(active, tok, self.out[idx, 0])
        if self.kept is not None:  # an idle row writes too: its slot is rewritten before anyone reads it
            self.kept[idx, at] = gather(logits, self.record)
        self.steps[idx] = steps + active.long()
        self.dec.tok[idx, 0] = tok
        stopped = torch.isin(tok, self.stops)
        ended = active & (stopped | (self.steps[idx] >= self.max_new[idx]))
        rows = idx[ended].tolist()  # the one host sync of a step
        if not rows:
            return []
        r = torch.tensor(rows, device=self.dec.device)
        self.active[r] = False
        self.dec.advance[r, 0] = 0
        counts, tokens = self.steps[r].tolist(), self.out[r].tolist()
        kept = self.kept[r, : max(counts)].cpu() if self.kept is not None else [None] * len(rows)  # one copy
        finished = []
        for row, n, toks, logits_row in zip(rows, counts, tokens, kept):
            finished.append(Finished(self.jobs[self.slot_job[row]].index, toks[:n],
                                     None if logits_row is None else logits_row[:n]))
            self.slot_job[row] = None
        return finished
