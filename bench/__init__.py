"""Benchmarks: `make bench` prints medians and side-by-side ratios measured in one run."""
