"""Benchmarks: each ``python -m bench.NAME`` measures one claim of README or bench/README.md."""

# The search's TensorFlow settings (oneDNN's kernels on x86-64, search.devices) are made when
# the search package loads, before TensorFlow: load it first, so a benchmark runs the kernels
# the search runs.
import search  # noqa: F401
