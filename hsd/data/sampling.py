"""Stratified subsets: ``max_samples: N`` keeps the label x target-group mix of the full split.

The first N rows of a file are whatever order the file was written in (the old pipeline's
``--max-samples`` took them and evaluated a skewed mix); a uniform draw of a small N can miss
a whole group. Allocation is proportional with the largest-remainder method, computed in
exact integers, so the same (samples, N, seed) always gives the same subset.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from hsd.errors import DataError
from hsd.records import Sample


def allocate(sizes: dict[tuple[str, str], int], n: int) -> dict[tuple[str, str], int]:
    """Largest-remainder apportionment of ``n`` over strata of the given sizes.

    Ties on the remainder go to the larger stratum, then to the sorted key, so the result
    never depends on dict order.
    """
    total = sum(sizes.values())
    quota = {k: (n * size) // total for k, size in sizes.items()}
    remainder = {k: (n * size) % total for k, size in sizes.items()}
    left = n - sum(quota.values())
    for key in sorted(sizes, key=lambda k: (-remainder[k], -sizes[k], k))[:left]:
        quota[key] += 1
    return quota


def stratified_sample(samples: Sequence[Sample], n: int, seed: int, where: str = "the samples") -> list[Sample]:
    """``n`` samples drawn per (label, target_group) stratum with ``seed``, in their input order.

    ``n`` larger than the number of samples is an error (with the counts) rather than a
    silent "all": a run that asked for 2000 samples and evaluated 1009 misleads its reader.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise DataError(f"max_samples must be a positive integer or 'all', got {n!r}")
    if n > len(samples):
        raise DataError(
            f"max_samples={n} but {where} has only {len(samples)} samples: "
            f"set data.max_samples to at most {len(samples)} or to 'all'"
        )
    if n == len(samples):
        return list(samples)
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        strata[(sample.label, sample.target_group)].append(index)
    quota = allocate({k: len(v) for k, v in strata.items()}, n)
    rng = random.Random(seed)
    chosen: list[int] = []
    for key in sorted(strata):
        chosen.extend(rng.sample(strata[key], quota[key]))
    return [samples[i] for i in sorted(chosen)]
