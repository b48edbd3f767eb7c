import io
import json
import logging
import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from loguru import logger

from gladd.logs import configure_logging, redact

ANSI = "\x1b["
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d")


@pytest.fixture(autouse=True)
def reset_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logger.remove()
    logger.configure(patcher=lambda record: None)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("httpcore", "watchfiles"):
        logging.getLogger(name).setLevel(logging.NOTSET)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_lines_without_colour_off_a_terminal() -> None:
    out = io.StringIO()
    configure_logging(stderr=out, environ={})
    logger.debug("not shown at INFO")
    logger.bind(policy="payments api").info("breaker {} opened", "db")

    (line,) = out.getvalue().splitlines()
    assert TIMESTAMP.match(line)
    assert f"| INFO     | {__name__}:" in line
    assert line.endswith('- breaker db opened policy="payments api"')
    assert ANSI not in line


def test_colours_on_a_terminal_unless_no_color() -> None:
    tty = Terminal()
    configure_logging(stderr=tty, environ={})
    logger.info("coloured")
    assert ANSI in tty.getvalue()

    plain = Terminal()
    configure_logging(stderr=plain, environ={"NO_COLOR": "1"})
    logger.info("plain")
    assert ANSI not in plain.getvalue()


def test_messages_with_braces_and_markup_are_printed_verbatim() -> None:
    out = io.StringIO()
    configure_logging(stderr=Terminal(), environ={})
    configure_logging(stderr=out, environ={})
    logger.info('json {"a": 1} and <red>tags</red>')
    assert out.getvalue().rstrip().endswith('- json {"a": 1} and <red>tags</red>')


def test_journald_lines_carry_syslog_priority_and_no_timestamp(tmp_path: Path) -> None:
    with (tmp_path / "journal").open("w+") as stream:
        status = os.fstat(stream.fileno())
        environ = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        configure_logging(level="TRACE", stderr=stream, environ=environ)
        logger.trace("t")
        logger.debug("d")
        logger.info("i")
        logger.success("s")
        logger.warning("w")
        try:
            raise RuntimeError("db down")
        except RuntimeError:
            logger.exception("e")
        logger.critical("c")
        stream.seek(0)
        lines = stream.read().splitlines()

    prefixes = [line[:3] for line in lines if not line.startswith("<3>")]
    assert prefixes == ["<7>", "<7>", "<6>", "<6>", "<4>", "<2>"]
    errors = [line for line in lines if line.startswith("<3>")]
    assert errors[0].startswith(f"<3>ERROR    | {__name__}:")
    assert errors[-1] == "<3>RuntimeError: db down"
    assert len(errors) > 3, "every traceback line keeps the error priority"
    assert not any(TIMESTAMP.search(line) for line in lines)
    assert ANSI not in "".join(lines)


def test_journal_stream_of_another_file_is_ignored(tmp_path: Path) -> None:
    with (tmp_path / "not-journal").open("w+") as stream:
        status = os.fstat(stream.fileno())
        environ = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino + 1}"}
        configure_logging(stderr=stream, environ=environ)
        logger.warning("w")
        stream.seek(0)
        line = stream.read()
    assert TIMESTAMP.match(line)
    assert not line.startswith("<")


def test_json_lines_parse_and_carry_extra_fields() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stderr=out, environ={})
    logger.bind(task_id=7, queue="emails").warning("retrying {}", "send")
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")

    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "WARNING"
    assert first["message"] == "retrying send"
    assert first["logger"] == __name__
    assert first["extra"] == {"task_id": 7, "queue": "emails"}
    assert first["time"].endswith("Z")
    assert datetime.fromisoformat(first["time"]).utcoffset() is not None
    assert second["level"] == "ERROR"
    assert second["exception"].rstrip().endswith("ValueError: bad")


def test_json_under_journald_is_prefixed(tmp_path: Path) -> None:
    with (tmp_path / "journal").open("w+") as stream:
        status = os.fstat(stream.fileno())
        environ = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        configure_logging(fmt="json", stderr=stream, environ=environ)
        logger.error("x")
        stream.seek(0)
        line = stream.read()
    assert line.startswith("<3>{")
    assert json.loads(line[3:])["message"] == "x"


def test_stdlib_logging_arrives_in_loguru() -> None:
    out = io.StringIO()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.StreamHandler(io.StringIO()))
    access.propagate = False
    configure_logging(fmt="json", stderr=out, environ={})

    logging.getLogger("httpx").warning("HTTP Request: %s %s", "GET", "https://example.org")
    access.info("127.0.0.1 - GET /healthz 200")
    logging.getLogger("some.library").debug("below INFO, dropped")

    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["logger"], r["level"], r["message"]) for r in records] == [
        ("httpx", "WARNING", "HTTP Request: GET https://example.org"),
        ("uvicorn.access", "INFO", "127.0.0.1 - GET /healthz 200"),
    ]
    assert records[0]["function"] == "test_stdlib_logging_arrives_in_loguru"
    assert access.handlers == []


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
def test_noisy_libraries_are_quiet_unless_debugging(level: str, shown: bool) -> None:
    out = io.StringIO()
    configure_logging(level=level, fmt="json", stderr=out, environ={})
    logging.getLogger("httpcore.connection").info("connect_tcp.started")
    logging.getLogger("watchfiles.main").info("1 change detected")
    logging.getLogger("httpx").info("HTTP Request")

    messages = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    noisy = ["connect_tcp.started", "1 change detected"]
    assert messages == ([*noisy, "HTTP Request"] if shown else ["HTTP Request"])


def test_reconfiguring_replaces_sinks() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stderr=first, environ={})
    configure_logging(stderr=second, environ={})
    logger.info("once")
    logging.getLogger("httpx").warning("once too")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 2


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_file_sink_writes_and_rotates(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "log" / "gladd" / "gladd.log"
    configure_logging(
        fmt=fmt,  # type: ignore[arg-type]
        file=path,
        rotation="200 B",
        retention=3,
        compression="gz",
        stderr=io.StringIO(),
        environ={},
    )
    for number in range(40):
        logger.info("line {}", number)
    logger.complete()

    files = sorted(p.name for p in path.parent.iterdir())
    assert "gladd.log" in files
    rotated = [name for name in files if name.endswith(".gz")]
    assert 1 <= len(rotated) <= 3
    last = path.read_text().splitlines()[-1]
    if fmt == "json":
        assert json.loads(last)["message"] == "line 39"
    else:
        assert TIMESTAMP.match(last)
        assert last.endswith("- line 39")


def test_secrets_never_reach_a_sink() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stderr=out, environ={})
    logger.bind(password="hunter2", dsn="postgresql://app:s3cret@db/app").info(
        "connecting with token=abc123"
    )
    logging.getLogger("httpx").info("headers: Authorization: Bearer eyJhbGci.x.y")
    try:
        raise ConnectionError("postgresql://app:s3cret@db/app unreachable")
    except ConnectionError:
        logger.exception("connect failed")

    text = out.getvalue()
    for secret in ("hunter2", "s3cret", "abc123", "eyJhbGci"):
        assert secret not in text
    first = json.loads(text.splitlines()[0])
    assert first["extra"] == {"password": "***", "dsn": "postgresql://app:***@db/app"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("redis://:pw@cache/0", "redis://:***@cache/0"),
        ("postgresql://user:p@ss@host/db", "postgresql://user:***@host/db"),
        ("https://example.org:8443/path@x", "https://example.org:8443/path@x"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("login password=hunter2 ok", "login password=*** ok"),
        ("PASSWORD: hunter2", "PASSWORD: ***"),
        ('{"db_password": "a b c"}', '{"db_password": "***"}'),
        ("GLADD_ADMIN_TOKEN=abc, next", "GLADD_ADMIN_TOKEN=***, next"),
        (
            "https://x/cb?code=1&access_token=abc&state=2",
            "https://x/cb?code=1&access_token=***&state=2",
        ),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic ***"),
        ("(b'authorization', b'Bearer abc')", "(b'authorization', b'Bearer ***')"),
        ("api_key='k-123'", "api_key='***'"),
        ("retrying in 2s (attempt 3/5)", "retrying in 2s (attempt 3/5)"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


@pytest.mark.parametrize("level", ["VERBOSE", "", "warn"])
def test_invalid_level_lists_valid_ones(level: str) -> None:
    with pytest.raises(ValueError, match="TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL"):
        configure_logging(level=level, stderr=io.StringIO(), environ={})


def test_level_is_case_insensitive_and_invalid_format_rejected() -> None:
    out = io.StringIO()
    configure_logging(level="warning", stderr=out, environ={})
    logger.info("hidden")
    logger.warning("shown")
    assert "shown" in out.getvalue()
    assert "hidden" not in out.getvalue()
    with pytest.raises(ValueError, match="text, json"):
        configure_logging(fmt="xml", stderr=out, environ={})  # type: ignore[arg-type]


def test_library_warnings_with_an_exception_are_one_line() -> None:
    sink = io.StringIO()
    configure_logging(stderr=sink, environ={})
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError:
        logging.getLogger("asyncpg.pool").warning("Failed to restore the pool", exc_info=True)
        logging.getLogger("uvicorn.error").error("Exception in ASGI application", exc_info=True)
    out = sink.getvalue()
    assert (
        "Failed to restore the pool: ConnectionRefusedError: [Errno 111] Connect call failed" in out
    )
    # Errors keep their traceback: those are bugs to read, not weather to report.
    assert out.count("Traceback") == 1
