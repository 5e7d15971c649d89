"""Figures the benchmarks derive (rates and ratios measured in one run), printed together at the end."""

from __future__ import annotations

FIGURES: dict[str, str] = {}
RATES: dict[str, float] = {}


def rate(benchmark, name: str, count: int) -> float:
    """Items per second from pytest-benchmark's mean time for `count` items, recorded under `name`."""
    per_second = count / benchmark.stats.stats.mean
    benchmark.extra_info[name] = round(per_second)
    RATES[name] = per_second
    FIGURES[name] = f"{per_second:,.0f}/s"
    return per_second


def ratio(name: str, numerator: str, denominator: str, target: str) -> None:
    """numerator / denominator of two rates of this run, when both were measured."""
    if numerator in RATES and denominator in RATES:
        FIGURES[name] = f"{RATES[numerator] / RATES[denominator]:.2f} (target {target})"
