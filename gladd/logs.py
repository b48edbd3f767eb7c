"""Logging for the whole daemon: one loguru pipeline that every library's logs flow into.

:func:`configure_logging` is called once at start-up (and again on reload if the log settings
change). It installs:

* a stderr sink, plain or coloured text, or one JSON object per line; under journald each line
  carries the ``<N>`` syslog priority prefix (sd-daemon(3)) and no timestamp of its own;
* an optional rotated file sink whose writes happen on loguru's worker thread, off the loop;
* a bridge from stdlib :mod:`logging` (uvicorn, asyncpg, httpx...) into loguru;
* a patcher that redacts secrets from every record before any sink sees it.

Exceptions are rendered with the stdlib traceback module instead of loguru's ``diagnose`` mode,
which prints local variable values and so would print passwords held in them.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

__all__ = ["InterceptHandler", "configure_logging", "redact"]

LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")

_ROUTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "asyncpg",
    "httpx",
    "httpcore",
    "watchfiles",
)
_NOISY_LOGGERS = ("httpcore", "watchfiles")

# The extra key through which the renderer hands text to the templates below; never a user field.
_RENDERED = "_gladd"

_TEXT_TEMPLATE = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS!UTC}Z</green> | <level>{level: <8}</level> | "
    "<cyan>{name}</cyan>:<cyan>{function}</cyan>:<cyan>{line}</cyan> - <level>{message}</level>"
    "{extra[_gladd][fields]}\n{extra[_gladd][exception]}"
)
_LINE_TEMPLATE = "{extra[_gladd][line]}\n"

_MASK = "***"
_URL_USERINFO = re.compile(
    # RFC 3986: userinfo ends at the last "@" before the authority ends at "/", "?" or "#".
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^/?#\s]*)(?=@)",
    re.IGNORECASE,
)
_AUTHORIZATION = re.compile(
    r"(?P<head>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)"
    r"(?P<secret>[^\s\"',;]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>\bbearer\s+)(?P<secret>[\w~+/=.-]+)", re.IGNORECASE)
_SENSITIVE_NAME = r"[\w.-]*(?:password|passwd|secret|token|api[_-]?key)[\w.-]*"
_KEY_VALUE = re.compile(
    rf"(?P<head>\b{_SENSITIVE_NAME}[\"']?\s*[=:]\s*)"
    r"(?P<secret>\"[^\"]*\"|'[^']*'|[^\s\"'&,;)}\]]+)",
    re.IGNORECASE,
)
_SENSITIVE_KEY = re.compile(rf"^{_SENSITIVE_NAME}$|^(?:proxy-)?authorization$", re.IGNORECASE)


def _mask(match: re.Match[str]) -> str:
    secret = match["secret"]
    if secret[:1] in {'"', "'"}:
        return f"{match['head']}{secret[0]}{_MASK}{secret[0]}"
    return f"{match['head']}{_MASK}"


def redact(text: str) -> str:
    """Mask passwords, tokens, Authorization credentials and URL passwords in ``text``.

    Deliberately greedy: masking a harmless ``max_tokens=5`` is a fair price for never writing a
    real credential to a log that is shipped elsewhere.
    """
    for pattern in (_URL_USERINFO, _AUTHORIZATION, _BEARER, _KEY_VALUE):
        text = pattern.sub(_mask, text)
    return text


def _redact_record(record: Record) -> None:
    record["message"] = redact(record["message"])
    extra = record["extra"]
    for key, value in extra.items():
        if isinstance(key, str) and _SENSITIVE_KEY.match(key):
            extra[key] = _MASK
        elif isinstance(value, str):
            extra[key] = redact(value)


def _syslog_priority(levelno: int) -> int:
    """Map a loguru level number to a syslog priority (RFC 5424 severities)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def _is_journal_stream(stream: TextIO, journal_stream: str | None) -> bool:
    """Whether ``stream`` is connected to journald, per ``$JOURNAL_STREAM`` (systemd.exec(5)).

    Comparing device and inode, not just checking the variable is set, matters: a child process
    inherits the variable even when its stderr was redirected to a file or a pipe.
    """
    if not journal_stream:
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return journal_stream == f"{status.st_dev}:{status.st_ino}"


def _format_exception(record: Record) -> str:
    if record["exception"] is None:
        return ""
    exc_type, value, tb = record["exception"]
    if exc_type is None or value is None:
        return ""
    return redact("".join(traceback.format_exception(exc_type, value, tb)))


def _user_fields(record: Record) -> dict[str, Any]:
    return {str(key): value for key, value in record["extra"].items() if key != _RENDERED}


def _logfmt_value(value: object) -> str:
    text = str(value)
    if not text or any(char.isspace() or char in '="' for char in text):
        return json.dumps(text)
    return text


def _text_fields(record: Record) -> str:
    return "".join(f" {key}={_logfmt_value(value)}" for key, value in _user_fields(record).items())


def _json_line(record: Record, exception: str) -> str:
    time = record["time"].astimezone(UTC).isoformat(timespec="microseconds")
    payload: dict[str, Any] = {
        "time": time.removesuffix("+00:00") + "Z",
        "level": record["level"].name,
        "logger": record["name"],
        "function": record["function"],
        "line": record["line"],
        "message": record["message"],
        "extra": _user_fields(record),
    }
    if exception:
        payload["exception"] = exception
    return json.dumps(payload, default=str, separators=(",", ":"))


def _journal_text_line(record: Record, exception: str) -> str:
    text = (
        f"{record['level'].name: <8} | {record['name']}:{record['function']}:{record['line']}"
        f" - {record['message']}{_text_fields(record)}"
    )
    return f"{text}\n{exception}" if exception else text


@dataclass(frozen=True, slots=True, kw_only=True)
class _Renderer:
    """A loguru ``format`` callable: renders what loguru cannot and returns a fixed template.

    The rendered text travels in ``record["extra"]`` because loguru re-parses the returned
    template for colour markup and ``{}`` fields: a message or JSON document put straight into
    the template would break on its first brace or ``<``.
    """

    fmt: Literal["text", "json"]
    journald: bool

    def __call__(self, record: Record) -> str:
        exception = _format_exception(record)
        if self.fmt == "text" and not self.journald:
            record["extra"][_RENDERED] = {"fields": _text_fields(record), "exception": exception}
            return _TEXT_TEMPLATE
        if self.fmt == "json":
            line = _json_line(record, exception)
        else:
            line = _journal_text_line(record, exception)
        if self.journald:
            # journald reads the prefix per line; unprefixed continuation lines would be INFO.
            prefix = f"<{_syslog_priority(record['level'].no)}>"
            line = "\n".join(prefix + part for part in line.splitlines())
        record["extra"][_RENDERED] = {"line": line}
        return _LINE_TEMPLATE


class InterceptHandler(logging.Handler):
    """Stdlib logging handler that re-emits records through loguru (loguru's documented recipe)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        try:
            message = record.getMessage()
        except Exception:
            self.handleError(record)
            return
        name = record.name
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None and record.levelno < logging.ERROR:
            # A library's warning about a recoverable error (asyncpg retrying its pool
            # during a database outage, say) is one line, not a traceback per retry.
            message = f"{message}: {type(exc_info[1]).__name__}: {exc_info[1]}"
            exc_info = None

        def use_stdlib_name(loguru_record: Record) -> None:
            loguru_record["name"] = name

        logger.opt(depth=_caller_depth(), exception=exc_info).patch(use_stdlib_name).log(
            level, message
        )


def _caller_depth() -> int:
    """How many frames up the code that called stdlib logging is, for loguru's file/line."""
    frame, depth = inspect.currentframe(), 0
    while frame is not None:
        filename = frame.f_code.co_filename
        is_logging = filename == logging.__file__
        is_frozen = "importlib" in filename and "_bootstrap" in filename
        if depth > 0 and not (is_logging or is_frozen or filename == __file__):
            break
        frame = frame.f_back
        depth += 1
    return depth - 1


def _route_stdlib_logging(levelno: int) -> None:
    """Send every stdlib logger through loguru and filter at the root, before formatting."""
    logging.basicConfig(handlers=[InterceptHandler()], level=levelno, force=True)
    for name in _ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True
        routed.setLevel(logging.NOTSET)
    if levelno > logging.DEBUG:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def _level_name(level: str) -> str:
    name = level.strip().upper()
    if name not in LEVELS:
        raise ValueError(f"invalid log level {level!r}; valid levels: {', '.join(LEVELS)}")
    return name


def configure_logging(
    *,
    level: str = "INFO",
    fmt: Literal["text", "json"] = "text",
    file: Path | None = None,
    rotation: str = "10 MB",
    retention: int = 5,
    compression: str | None = "gz",
    stderr: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Replace all loguru sinks and stdlib handlers with gladd's; safe to call again on reload.

    ``level`` is case-insensitive; an unknown level or format raises ValueError before anything
    is changed. ``NO_COLOR`` in ``environ`` turns colours off even on a terminal.
    """
    level_name = _level_name(level)
    if fmt not in {"text", "json"}:
        raise ValueError(f"invalid log format {fmt!r}; valid formats: text, json")
    env = os.environ if environ is None else environ
    stream = sys.stderr if stderr is None else stderr
    journald = _is_journal_stream(stream, env.get("JOURNAL_STREAM"))
    colorize = fmt == "text" and not journald and "NO_COLOR" not in env and stream.isatty()

    logger.remove()
    logger.configure(patcher=_redact_record)
    common: dict[str, Any] = {"level": level_name, "backtrace": False, "diagnose": False}
    logger.add(stream, format=_Renderer(fmt=fmt, journald=journald), colorize=colorize, **common)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        logger.add(
            file,
            format=_Renderer(fmt=fmt, journald=False),
            colorize=False,
            rotation=rotation,
            retention=retention,
            compression=compression,
            enqueue=True,
            encoding="utf-8",
            **common,
        )
    _route_stdlib_logging(logger.level(level_name).no)
