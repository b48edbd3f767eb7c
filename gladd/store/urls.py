"""Store URLs as they may be shown: any password masked."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe to log and show."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed netloc (e.g. a bad port): hide everything before @
        head, sep, tail = url.rpartition("@")
        return f"{head.split('://', 1)[0]}://***@{tail}" if sep else url
    if password is None and "password=" not in parts.query:
        return url  # unchanged: urlunsplit would normalise e.g. sqlite:/// away
    if password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}:***@{hostinfo}")
    if "password=" in parts.query:  # libpq-style ?password=... (asyncpg accepts it)
        parts = parts._replace(query=_QUERY_PASSWORD.sub(r"\1***", parts.query))
    return urlunsplit(parts)
