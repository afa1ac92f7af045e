"""Small statistics helpers for the benchmarks."""

from __future__ import annotations

import math


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, nearest-rank (no interpolation)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_fields(samples_s: list[float]) -> dict[str, float]:
    """p50/p95 (and mean) in milliseconds, rounded for printing."""
    return {
        "p50_ms": round(percentile(samples_s, 50) * 1000, 3),
        "p95_ms": round(percentile(samples_s, 95) * 1000, 3),
        "mean_ms": round(sum(samples_s) / len(samples_s) * 1000, 3),
    }
