"""The errors gladd raises, as one tree.

::

    GladdError                      root: catch this to catch anything of ours
    ├── ConfigError                 an operator's configuration is wrong
    │   ├── PolicyError             policies.toml: carries every Problem (file, line, key path)
    │   └── SettingsError           settings from flags, environment or env file
    └── StartupError                a subsystem could not start (e.g. admin port in use)

Later subsystems hang their own branches here (store, plugins, resilience). An operator
mistake is always a ``ConfigError`` or ``StartupError`` with a one-line message that says
what is wrong, where, and how to fix it; the CLI prints it without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GladdError(Exception):
    """Root of every error gladd raises on purpose."""


class ConfigError(GladdError):
    """The configuration an operator wrote is wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong in a policies file, located as precisely as we can."""

    path: str
    """Dotted key path, e.g. ``retry.http.attempts``; empty for file-level problems."""
    message: str
    line: int | None = None
    column: int | None = None

    def render(self, file: str) -> str:
        where = file
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PolicyError(ConfigError):
    """A policies file that cannot be used; ``problems`` lists every error found."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render(file) for p in self.problems))


class SettingsError(ConfigError):
    """A setting (flag, ``GLADD_*`` variable or env-file entry) is invalid."""


class StartupError(GladdError):
    """A subsystem could not start; the message says which and why."""
