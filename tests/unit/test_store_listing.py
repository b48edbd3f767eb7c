"""The pure listing rules every store shares (gladd/store/listing.py): cursors, the page's
"more", and the filter parameters as operators type them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gladd.store.base import TaskFilter, TaskState
from gladd.store.listing import (
    BadListing,
    check_limit,
    decode_cursor,
    encode_cursor,
    parse_filter,
    parse_states,
    parse_time,
    upper_bound,
)

NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize("last_id", [1, 99, 2**63 - 1])
def test_a_cursor_gives_back_its_id(last_id: int) -> None:
    cursor = encode_cursor(last_id)
    assert str(last_id) not in cursor  # opaque: callers pass it back, never build it
    assert decode_cursor(cursor) == last_id


@pytest.mark.parametrize("text", ["", "!!", "bm90IGFuIGlk", encode_cursor(1) + "$", "x" * 500])
def test_anything_else_is_not_a_cursor(text: str) -> None:
    with pytest.raises(BadListing, match="not a cursor") as caught:
        decode_cursor(text)
    assert caught.value.param == "cursor"


def test_limits_run_from_1_to_1000() -> None:
    assert check_limit("1") == 1
    assert check_limit("1000") == 1000
    for bad in ("0", "1001", "-5", "ten", "1e3", "²", "١٢"):
        with pytest.raises(BadListing, match="from 1 to 1000"):
            check_limit(bad)


def test_states_may_be_repeated_or_comma_separated() -> None:
    assert parse_states(["dead,cancelled", "PENDING", " "]) == {
        TaskState.DEAD,
        TaskState.CANCELLED,
        TaskState.PENDING,
    }
    with pytest.raises(BadListing, match="'zombie' is not a state: use pending, running"):
        parse_states(["dead,zombie"])


def test_times_are_iso_or_a_duration_ago() -> None:
    assert parse_time("1h30m", param="since", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_time("2026-12-01T10:00:00+01:00", param="since", now=NOW) == datetime(
        2026, 12, 1, 9, tzinfo=UTC
    )
    assert parse_time("2026-12-01T10:00:00", param="until", now=NOW).tzinfo is UTC
    with pytest.raises(BadListing, match=r"^until: 'soon' is neither a time nor a duration"):
        parse_time("soon", param="until", now=NOW)


def test_a_filter_refuses_an_empty_time_range() -> None:
    with pytest.raises(BadListing, match=r"^until: must be later than since"):
        parse_filter(since="1h", until="2h", now=NOW)
    assert parse_filter(kind="", error="", now=NOW) == TaskFilter()


def test_the_upper_bound_is_the_cursor_or_the_fixed_set_whichever_is_lower() -> None:
    assert upper_bound(TaskFilter(), None) == 2**63 - 1
    assert upper_bound(TaskFilter(), 50) == 50
    assert upper_bound(TaskFilter(max_id=20), 50) == 21
    assert upper_bound(TaskFilter(max_id=80), 50) == 50
