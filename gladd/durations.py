"""Human durations: ``"500ms"``, ``"5s"``, ``"15m"``, ``"1h30m"``, ``"7d"``.

Durations are kept as float seconds inside gladd; this module is the only place that
turns text into seconds and back, so ``gladd check``, the reload diff and the docs agree.
It imports nothing but the standard library, for the commands that start fast; the pydantic
field types built on it are in :mod:`gladd.duration_fields`.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")

EXAMPLES = '"500ms", "5s", "15m", "1h30m" or "7d"'


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raises ``ValueError`` with a message fit for an operator."""
    if isinstance(value, bool) or not isinstance(value, str):
        # ValueError, not TypeError: pydantic reports only ValueError as a field problem.
        raise ValueError(  # noqa: TRY004
            f"must be a duration string like {EXAMPLES} (got {value!r})"
        )
    text = value.strip().replace(" ", "")
    if not _WHOLE.fullmatch(text):
        raise ValueError(
            f"{value!r} is not a duration: use a number and a unit (ms, s, m, h, d), "
            f"like {EXAMPLES}"
        )
    return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest readable text for ``seconds``: 0.5 → ``500ms``, 5400 → ``1h30m``."""
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    parts: list[str] = []
    rest = seconds
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        whole = int(rest // size)
        if whole:
            parts.append(f"{whole}{unit}")
            rest -= whole * size
    if rest or not parts:
        parts.append(f"{round(rest, 3):g}s")
    return "".join(parts)


def seconds_or_duration(value: object) -> float:
    """A duration given as a number of seconds or as text (:func:`parse_duration`): what
    the admin API and the Python API take, where a caller may hold either."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return parse_duration(value)
