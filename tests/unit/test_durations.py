from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gladd.durations import format_duration, parse_duration, seconds_or_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("2.5s", 2.5),
        ("15m", 900.0),
        ("1h30m", 5400.0),
        ("7d", 604800.0),
        (" 1m 30s ", 90.0),
    ],
)
def test_parses_human_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["15 minutes", "5", "s", "-5s", "1.s", ""])
def test_rejects_text_that_is_not_a_duration(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [5, 2.5, True, None])
def test_rejects_bare_numbers_and_asks_for_a_unit(bad: object) -> None:
    with pytest.raises(ValueError, match=r"must be a duration string like \"500ms\""):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.5, "500ms"), (5.0, "5s"), (900.0, "15m"), (5400.0, "1h30m")]
)
def test_formats_back_to_the_shortest_text(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10 * 86400 * 1000))
def test_format_then_parse_round_trips_milliseconds(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize(("given", "seconds"), [(30, 30.0), (1.5, 1.5), ("1m30s", 90.0), (0, 0.0)])
def test_an_api_duration_is_seconds_or_text(given: object, seconds: float) -> None:
    assert seconds_or_duration(given) == seconds


@pytest.mark.parametrize("given", [True, None, [30], "soon", "30"])
def test_an_api_duration_refuses_what_is_neither(given: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        seconds_or_duration(given)
