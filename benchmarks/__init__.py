"""Speed benchmarks of hsd on GPUs, run from the repository root (``python -m benchmarks.bench``).

Not part of the installed package: a benchmark drives hsd only through its public API (the
backends of :mod:`hsd.inference` and their benchmark hooks), so it cannot come to depend on, or
change, what ``hsd validate`` does.
"""
