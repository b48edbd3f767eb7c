"""Policies as an operator writes them (durations as text), for the resilience tests."""

from __future__ import annotations

from typing import Any

from gladd.policies.model import BreakerPolicy, RetryPolicy

_DURATIONS = {
    "base_delay",
    "max_delay",
    "deadline",
    "retry_after_cap",
    "window",
    "slow_call",
    "open_for",
    "max_open_for",
    "cache_max_age",
}


def _text(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in _DURATIONS and isinstance(value, int | float):
            out[key] = f"{value * 1000:.6f}".rstrip("0").rstrip(".") + "ms"
        elif isinstance(value, dict):
            out[key] = _text(value)
        else:
            out[key] = value
    return out


def retry_policy(**fields: Any) -> RetryPolicy:
    return RetryPolicy.model_validate(_text(fields))


def breaker_policy(**fields: Any) -> BreakerPolicy:
    return BreakerPolicy.model_validate(_text(fields))
