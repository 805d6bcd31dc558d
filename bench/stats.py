"""The summaries the benchmarks print: percentiles and one-line descriptions of samples in
seconds, shown in milliseconds. Each bench script imports this from its own directory."""

from __future__ import annotations

import statistics


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at ``fraction`` of the sorted samples (nearest rank, no interpolation)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def describe_range(samples: list[float]) -> str:
    """Median, minimum and maximum: for a few slow runs (boots, pulls)."""
    return (
        f"median {statistics.median(samples) * 1000:8.0f} ms"
        f"  min {min(samples) * 1000:8.0f} ms  max {max(samples) * 1000:8.0f} ms"
    )


def describe_tail(samples: list[float]) -> str:
    """p50, p99 and mean: for many fast runs (round trips)."""
    p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
    return f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  mean {statistics.fmean(samples) * 1000:7.2f} ms"
