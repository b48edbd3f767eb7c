"""Rate text: what parses, what it formats back to, and what each mistake says."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gladd.policies import ServiceBinding, TaskBinding
from gladd.rates import EXAMPLES, format_rate, parse_rate


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("100/s", 100.0),
        ("300/m", 5.0),
        ("5000/h", 5000 / 3600),
        ("2/d", 2 / 86400),
        ("10/30s", 1 / 3),
        ("1/500ms", 2.0),
        ("3/1h30m", 3 / 5400),
        ("2.5/s", 2.5),
        (" 100 / s ", 100.0),
    ],
)
def test_parses_a_count_per_period(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize(
    ("text", "formatted"),
    [
        ("100/s", "100/s"),
        ("5000/h", "5000/h"),
        ("300/m", "5/s"),
        ("10/30s", "20/m"),
        ("2.5/s", "150/m"),
        ("3/7s", "3/7s"),
        ("1/365d", "1/365d"),
        ("1/500ms", "2/s"),
    ],
)
def test_formats_as_a_whole_count_per_unit_when_there_is_one(text: str, formatted: str) -> None:
    assert format_rate(parse_rate(text)) == formatted


@given(
    st.integers(min_value=1, max_value=1000),
    st.integers(min_value=1, max_value=30 * 86400 * 1000),
)
def test_a_rate_written_with_a_count_up_to_1000_formats_back_to_itself(
    count: int, millis: int
) -> None:
    written = parse_rate(f"{count}/{millis}ms")
    assert parse_rate(format_rate(written)) == pytest.approx(written, rel=1e-12)


def test_a_policy_holds_events_per_second_and_dumps_rate_text() -> None:
    binding = TaskBinding.model_validate({"rate": "5000/h"})
    assert binding.rate == pytest.approx(5000 / 3600)
    assert binding.model_dump()["rate"] == "5000/h"
    assert ServiceBinding.model_validate({"rate": "10/30s"}).model_dump()["rate"] == "20/m"
    assert TaskBinding().model_dump()["rate"] is None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (100, f"must be a rate string like {EXAMPLES} (got 100)"),
        (2.5, f"must be a rate string like {EXAMPLES} (got 2.5)"),
        (True, f"must be a rate string like {EXAMPLES} (got True)"),
        (None, f"must be a rate string like {EXAMPLES} (got None)"),
        ("fast", f"'fast' is not a rate: write a count, a slash and a period, like {EXAMPLES}"),
        ("100", f"'100' is not a rate: write a count, a slash and a period, like {EXAMPLES}"),
        ("/s", f"'/s' is not a rate: write a count, a slash and a period, like {EXAMPLES}"),
        ("-1/s", f"'-1/s' is not a rate: write a count, a slash and a period, like {EXAMPLES}"),
        ("1e3/s", f"'1e3/s' is not a rate: write a count, a slash and a period, like {EXAMPLES}"),
        ("", f"'' is not a rate: write a count, a slash and a period, like {EXAMPLES}"),
        (
            "10/fortnight",
            "'10/fortnight' is not a rate: the period 'fortnight' is not s, m, h, d or a "
            f"duration; write it like {EXAMPLES}",
        ),
        (
            "10/30",
            f"'10/30' is not a rate: the period '30' is not s, m, h, d or a duration; "
            f"write it like {EXAMPLES}",
        ),
        ("0/s", "'0/s' allows nothing: the count and the period must be above 0"),
        ("0.0/m", "'0.0/m' allows nothing: the count and the period must be above 0"),
        ("1/0s", "'1/0s' allows nothing: the count and the period must be above 0"),
    ],
)
def test_every_bad_rate_says_what_is_wrong_and_how_to_write_one(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_rate(bad)
