"""SQL kept in ``.sql`` files in each store's ``sql/`` folder, as procrastinate keeps it.

``queries.sql`` holds named queries: each ``-- name: NAME`` line starts one, whose text runs
to the next (comments included; a final ``;`` dropped). The text is constant, so a driver
that prepares statements (asyncpg, sqlite3's statement cache) reuses each. ``NNNN_name.sql``
files are the schema's migrations, applied in version order.
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable

_MIGRATION_FILE = re.compile(r"^(\d{4})_\w+\.sql$")


def sql_folder(package: str) -> Traversable:
    """The ``sql/`` folder of the store package ``package`` (inside the wheel too)."""
    return files(package).joinpath("sql")


def load_queries(package: str) -> dict[str, str]:
    """Name → text of every query in ``package``'s ``sql/queries.sql``."""
    text = sql_folder(package).joinpath("queries.sql").read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    for chunk in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = chunk.partition("\n")
        queries[name.strip()] = body.strip().rstrip(";")
    return queries


def load_migrations(package: str) -> tuple[tuple[int, str], ...]:
    """(version, SQL text) of every migration in ``package``'s ``sql/``, in order."""
    found = []
    for entry in sql_folder(package).iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match[1]), entry.read_text(encoding="utf-8")))
    return tuple(sorted(found))
