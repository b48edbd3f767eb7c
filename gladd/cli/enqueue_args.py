"""What ``gladd tasks enqueue`` reads before it enqueues, either way: its arguments, the
``--from-file`` batch, the caller's trace."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gladd.cli.exits import EXIT_DATAERR, EXIT_NOINPUT, EXIT_USAGE, fail

TRACE_ENV = ("TRACEPARENT", "TRACESTATE")
"""The caller's trace, as programs hand it to a child process (OpenTelemetry's
environment-variable carrier): the enqueue joins it."""


def trace_carrier() -> dict[str, str]:
    return {name.lower(): os.environ[name] for name in TRACE_ENV if os.environ.get(name)}


def prepare_enqueue(args: argparse.Namespace) -> int | None:
    """Refuse a usage error (64); with --from-file, read its lines into ``args.batch``
    (66 when it cannot be read, 65 with each line that is not JSON)."""
    single = {
        "--payload": args.payload,
        "--delay": args.delay,
        "--priority": args.priority,
        "--unique-key": args.unique_key,
    }
    given = [flag for flag, value in single.items() if value is not None]
    if args.from_file is None and args.kind is None:
        fail("tasks enqueue: give a KIND, or --from-file FILE for a batch")
        return EXIT_USAGE
    if args.from_file is not None and (args.kind is not None or given):
        also = ", ".join(["KIND"] * (args.kind is not None) + given)
        fail(f"tasks enqueue: --from-file takes the tasks from its file, not {also}")
        return EXIT_USAGE
    if args.from_file is None:
        return None
    name = "<stdin>" if args.from_file == "-" else args.from_file
    try:
        data = sys.stdin.buffer.read() if args.from_file == "-" else Path(name).read_bytes()
    except OSError as exc:
        fail(f"cannot read {name}: {exc.strerror or exc}")
        return EXIT_NOINPUT
    lines, problems = read_json_lines(data)
    if problems:
        for line, message in problems:
            print(f"{name}:{line}: {message}", file=sys.stderr)
        return EXIT_DATAERR
    args.batch = BatchFile(name=name, lines=[n for n, _ in lines], items=[i for _, i in lines])
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFile:
    """The items of ``--from-file``, each with the line it came from."""

    name: str
    lines: list[int]
    items: list[Any]


def read_json_lines(data: bytes) -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
    """Each line of ``data`` that is not blank as (line number, value), and each that is
    not JSON as (line number, why)."""
    values: list[tuple[int, Any]] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            values.append((number, json.loads(line, parse_constant=_not_a_number)))
        except RecursionError:
            problems.append((number, "not JSON: nested too deeply to decode"))
        except ValueError as exc:  # also UnicodeDecodeError
            problems.append((number, f"not JSON: {exc}"))
    return values, problems


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
