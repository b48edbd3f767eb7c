"""Pydantic field types for durations, built on :mod:`gladd.durations`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from gladd.durations import format_duration, parse_duration, seconds_or_duration

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A pydantic field type: accepts duration text, holds float seconds."""

AnyDuration = Annotated[
    float,
    BeforeValidator(seconds_or_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""Like :data:`Duration`, also taking a number of seconds (an API field, not a policy's)."""
