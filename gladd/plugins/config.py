"""A plugin's settings: its ``[plugins.NAME]`` table, secrets resolved, validated.

Secrets stay out of ``policies.toml``: for a field ``token`` an operator may write
``token_env = "GITHUB_TOKEN"`` (read from the environment) or
``token_file = "/etc/gladd/github-token"`` (read from a file, trailing newline dropped —
systemd's ``LoadCredential=`` puts them in such files). Declare the field as
``pydantic.SecretStr`` and its value shows as ``**********`` in every repr and log line.
Validation messages never echo the values they refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gladd.errors import Problem
from gladd.plugins.api import Plugin

_REFERENCES = (("_env", "environment variable"), ("_file", "file"))


def plugin_settings(
    plugin: Plugin, table: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[Any, list[Problem]]:
    """The validated settings of ``plugin`` (None when it has no model) and any problems."""
    base = f"plugins.{plugin.name}"
    if plugin.settings is None:
        return dict(table), []
    values, problems = _resolve(plugin.settings, table, environ, base)
    if problems:
        return None, problems
    try:
        return plugin.settings.model_validate(values), []
    except ValidationError as exc:
        return None, [
            Problem(path=".".join([base, *(str(p) for p in err["loc"])]), message=err["msg"])
            for err in exc.errors(include_input=False)
        ]


def _resolve(
    model: type[BaseModel], table: Mapping[str, Any], environ: Mapping[str, str], base: str
) -> tuple[dict[str, Any], list[Problem]]:
    fields = model.model_fields
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in table.items():
        target, how = _reference(key, fields)
        if target is None:
            values[key] = value
            continue
        path = f"{base}.{key}"
        if target in table:
            problems.append(Problem(path=path, message=f"give {target} or {key}, not both"))
            continue
        found = _read(how, value, environ)
        if isinstance(found, Problem):
            problems.append(Problem(path=path, message=found.message))
        else:
            values[target] = found
    return values, problems


def _reference(key: str, fields: Mapping[str, Any]) -> tuple[str | None, str]:
    if key in fields:
        return None, ""
    for suffix, how in _REFERENCES:
        if key.endswith(suffix) and key[: -len(suffix)] in fields:
            return key[: -len(suffix)], how
    return None, ""


def _read(how: str, where: Any, environ: Mapping[str, str]) -> str | Problem:
    if not isinstance(where, str) or not where:
        return Problem(path="", message=f"must name a {how} (a non-empty string)")
    if how == "file":
        try:
            return Path(where).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            return Problem(path="", message=f"cannot read {where}: {exc.strerror or exc}")
    value = environ.get(where)
    if value is None:
        return Problem(path="", message=f"environment variable {where} is not set")
    return value
