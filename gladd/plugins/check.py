"""What ``gladd check`` says about plugins: refusals (errors), notes and warnings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gladd.plugins.discover import discover_plugins
from gladd.plugins.lint import blocking_call_warnings
from gladd.policies import Policies


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginReport:
    plugins: tuple[str, ...]
    """``name (kind, kind...)`` of each plugin that would run."""
    errors: tuple[str, ...]
    """Plugins refused: the daemon would run without them (``gladd check`` fails)."""
    notes: tuple[str, ...]
    """Shipped plugins nobody configured."""
    warnings: tuple[str, ...]
    """Blocking calls in async handlers; ``[plugins.X]`` tables of no loaded plugin."""


def plugin_report(
    policies: Policies,
    plugin_paths: Sequence[Path] = (),
    *,
    environ: Mapping[str, str] | None = None,
) -> PluginReport:
    found = discover_plugins(policies, plugin_paths, environ=environ)
    known = {p.name for p in found.plugins} | {p.plugin for p in found.problems if p.plugin}
    unknown = [
        f"policies: plugins.{name}: no plugin named {name} is loaded "
        f"(loaded: {', '.join(sorted(p.name for p in found.plugins)) or 'none'})"
        for name in sorted(policies.plugins)
        if name not in known
    ]
    return PluginReport(
        plugins=tuple(f"{p.name} ({', '.join(k.name for k in p.kinds)})" for p in found.plugins),
        errors=tuple(str(p) for p in found.problems if not p.inactive),
        notes=tuple(str(p) for p in found.problems if p.inactive),
        warnings=(
            *blocking_call_warnings(found.plugins),
            *unknown,
        ),
    )
