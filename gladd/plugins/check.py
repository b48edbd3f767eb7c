"""What ``gladd check`` says about plugins: refusals (errors), notes and warnings.

An error is a plugin the daemon would run without — it failed to import, declares no
plugin, clashes with another, lacks its services or settings — or a ``[plugins.NAME]``
table that no loaded plugin reads (a typo, or the plugin is missing): a deployment with
either does not do what its policies say, so ``gladd check`` fails on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gladd.plugins.discover import PluginProblem, discover_plugins
from gladd.plugins.lint import blocking_call_warnings
from gladd.policies import Policies


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginReport:
    plugins: tuple[str, ...]
    """``name (kind, kind...)`` of each plugin that would run."""
    errors: tuple[PluginProblem, ...]
    """Plugins refused, and settings tables of no plugin (``gladd check`` fails)."""
    notes: tuple[PluginProblem, ...]
    """Shipped plugins nobody configured."""
    warnings: tuple[str, ...]
    """Blocking calls in async handlers."""

    def as_json(self) -> dict[str, Any]:
        def problems(found: tuple[PluginProblem, ...]) -> list[dict[str, Any]]:
            return [{"source": p.source, "plugin": p.plugin, "message": p.message} for p in found]

        return {
            "ok": not self.errors,
            "loaded": list(self.plugins),
            "errors": problems(self.errors),
            "warnings": list(self.warnings),
            "notes": problems(self.notes),
        }


def plugin_report(
    policies: Policies,
    plugin_paths: Sequence[Path] = (),
    *,
    environ: Mapping[str, str] | None = None,
) -> PluginReport:
    found = discover_plugins(policies, plugin_paths, environ=environ)
    known = {p.name for p in found.plugins} | {p.plugin for p in found.problems if p.plugin}
    loaded = ", ".join(sorted(p.name for p in found.plugins)) or "none"
    unknown = tuple(
        PluginProblem(
            source="policies",
            plugin=name,
            message=f"plugins.{name}: no plugin named {name} is loaded (loaded: {loaded})",
        )
        for name in sorted(policies.plugins)
        if name not in known
    )
    return PluginReport(
        plugins=tuple(f"{p.name} ({', '.join(k.name for k in p.kinds)})" for p in found.plugins),
        errors=(*(p for p in found.problems if not p.inactive), *unknown),
        notes=tuple(p for p in found.problems if p.inactive),
        warnings=tuple(blocking_call_warnings(found.plugins)),
    )
