"""``Retry-After`` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date → seconds to wait.

A malformed value is treated as absent and logged, never raised: a broken server header
must not turn a retryable failure into a crash. A date in the past means "now" (0 s).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from loguru import logger

_MAX_LOGGED = 80


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to ``value``; None when absent or malformed.

    ``now`` is the wall-clock time (a Unix timestamp) an HTTP-date is measured from.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return _garbage(value)
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        seconds = float(text)  # not RFC, but common: "1.5"
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else _garbage(value)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return _garbage(value)
    if when.tzinfo is None:  # RFC 9110 dates are always GMT
        when = when.replace(tzinfo=UTC)
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)


def _garbage(value: str) -> float | None:
    logger.warning(
        "ignoring malformed Retry-After header {!r}: expected seconds or an HTTP date",
        value[:_MAX_LOGGED],
    )
    return None


def http_date(moment: datetime) -> str:
    """``moment`` as an IMF-fixdate, the form servers send (for tests and fakes)."""
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
