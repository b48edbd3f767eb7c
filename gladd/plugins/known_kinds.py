"""Every task kind a process knows: the built-ins plus the plugins' (for enqueue checks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gladd.executor.kinds import KindRegistry, builtin_kinds
from gladd.plugins.boundary import plugin_kinds
from gladd.plugins.discover import discover_plugins
from gladd.policies import Policies


def known_kinds(policies: Policies, plugin_paths: Sequence[Path] = ()) -> KindRegistry:
    """The kinds the CLI and the Python client validate enqueues against, as the daemon
    would: built-ins and every plugin that loads (broken ones are skipped, as there)."""
    discovery = discover_plugins(policies, plugin_paths)
    kinds = plugin_kinds(discovery.plugins, discovery.settings.get)
    return KindRegistry([*builtin_kinds(), *kinds])
