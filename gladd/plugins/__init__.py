"""Integration plugins: the public API (:mod:`.api`), discovery (:mod:`.discover`), the host
that owns their resources (:mod:`.host`), and ``gladd check``'s blocking-call lint.

Plugin authors need :class:`Plugin`, :class:`TaskKind`, :func:`raise_for_status` and the
errors; the daemon wires :func:`discover_plugins` and :class:`PluginHost`.
"""

from gladd.errors import PluginError, PluginLoadError
from gladd.plugins.api import (
    ANY_SERVICE,
    EnqueueContext,
    Plugin,
    PluginRuntime,
    TaskKind,
    error_detail,
    raise_for_status,
    service_of,
)
from gladd.plugins.boundary import plugin_kinds
from gladd.plugins.check import PluginReport, plugin_report
from gladd.plugins.discover import (
    ENTRY_POINT_GROUP,
    Discovery,
    PluginProblem,
    discover_plugins,
    shipped_plugin_dir,
    unknown_plugin_tables,
)
from gladd.plugins.errors import (
    ServiceCallError,
    ServiceRefused,
    ServiceTimeout,
    ServiceUnavailable,
)
from gladd.plugins.host import PluginHost
from gladd.plugins.lint import blocking_call_warnings

__all__ = [
    "ANY_SERVICE",
    "ENTRY_POINT_GROUP",
    "Discovery",
    "EnqueueContext",
    "Plugin",
    "PluginError",
    "PluginHost",
    "PluginLoadError",
    "PluginProblem",
    "PluginReport",
    "PluginRuntime",
    "ServiceCallError",
    "ServiceRefused",
    "ServiceTimeout",
    "ServiceUnavailable",
    "TaskKind",
    "blocking_call_warnings",
    "discover_plugins",
    "error_detail",
    "plugin_kinds",
    "plugin_report",
    "raise_for_status",
    "service_of",
    "shipped_plugin_dir",
    "unknown_plugin_tables",
]
