"""Rates: ``"100/s"``, ``"5000/h"``, ``"10/30s"`` — so many events per period.

A rate is kept as float events per second inside gladd; this module is the only place that
turns text into a rate and back, as :mod:`gladd.durations` is for durations.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from gladd.durations import format_duration, parse_duration

EXAMPLES = '"100/s", "300/m", "5000/h" or "10/30s"'
_RATE = re.compile(r"(\d+(?:\.\d+)?)/(.+)")
_MAX_COUNT = 1000  # format_rate's search for a count whose period reads back exactly


def parse_rate(value: object) -> float:
    """Events per second in ``value``; raises ``ValueError`` fit for an operator."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(  # noqa: TRY004 - pydantic reports only ValueError as a field problem
            f"must be a rate string like {EXAMPLES} (got {value!r})"
        )
    match = _RATE.fullmatch(value.strip().replace(" ", ""))
    if match is None:
        raise ValueError(
            f"{value!r} is not a rate: write a count, a slash and a period, like {EXAMPLES}"
        )
    count, period = match.groups()
    try:
        seconds = parse_duration(period if period[0].isdigit() else f"1{period}")
    except ValueError:
        raise ValueError(
            f"{value!r} is not a rate: the period {period!r} is not s, m, h, d or a "
            f"duration; write it like {EXAMPLES}"
        ) from None
    if float(count) <= 0 or seconds <= 0:
        raise ValueError(f"{value!r} allows nothing: the count and the period must be above 0")
    return float(count) / seconds


def format_rate(per_second: float) -> str:
    """Readable text for a rate that parses back to it: 100.0 → ``100/s``, 5000/3600 →
    ``5000/h``, 3/7 → ``3/7s`` (a whole count per unit when there is one, else the smallest
    count whose period is a readable duration)."""
    for unit, seconds in (("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0)):
        count = per_second * seconds
        if abs(count - round(count)) < 1e-9 and round(count) >= 1:
            return f"{round(count)}/{unit}"
    for count in range(1, _MAX_COUNT + 1):
        text = f"{count}/{format_duration(count / per_second)}"
        if math.isclose(parse_rate(text), per_second, rel_tol=1e-12):
            return text
    return f"1/{format_duration(1 / per_second)}"


Rate = Annotated[
    float,
    BeforeValidator(parse_rate),
    PlainSerializer(format_rate, return_type=str),
]
"""A pydantic field type: accepts rate text, holds float events per second."""
