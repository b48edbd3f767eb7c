"""Finding plugins and refusing the broken ones, precisely and without stopping the rest.

Sources, in order (the first plugin to take a name keeps it):

1. the plugins shipped with gladd (the repository's ``plugins/``, which the wheel carries
   as ``gladd/_shipped_plugins``);
2. ``*.py`` modules in each of ``settings.plugin_paths`` (files starting with ``_`` skipped);
3. entry points in the group ``gladd.plugins`` (pip-installed plugins), each naming a
   ``Plugin`` object or a module with a ``plugin`` attribute.

Each module is imported on its own; an import error, a missing or malformed ``plugin``, a
duplicate name or kind, a kind outside the plugin's namespace, a service missing from
``[services]`` or invalid ``[plugins.NAME]`` settings refuses that plugin only, with a
:class:`PluginProblem` saying where and why. Nothing here raises.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from loguru import logger

from gladd.errors import Problem
from gladd.plugins.api import KIND_VERB, Plugin
from gladd.plugins.config import plugin_settings
from gladd.policies import Policies

ENTRY_POINT_GROUP = "gladd.plugins"
RESERVED_NAMES = frozenset({"gladd"})
"""``gladd.*`` kinds are the executor's own (``gladd.noop``, ``gladd.sleep``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginProblem:
    """Why a plugin (or a module that should have been one) was refused."""

    source: str
    message: str
    plugin: str | None = None
    inactive: bool = False
    """Not an error: a plugin nobody configured (none of its services, no settings)."""

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Discovery:
    """The plugins that loaded and validated, their settings, and every problem found."""

    plugins: tuple[Plugin, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[PluginProblem, ...] = ()

    def log(self) -> None:
        for problem in self.problems:
            if problem.inactive:
                logger.info("plugin not enabled: {}", problem)
            else:
                logger.error("plugin refused: {}", problem)
        for plugin in self.plugins:
            logger.info(
                "plugin {} loaded from {}: kinds {}",
                plugin.name,
                plugin.source,
                ", ".join(k.name for k in plugin.kinds) or "none",
            )


def shipped_plugin_dir() -> Path:
    """Where the shipped plugins are: inside the installed package, else the checkout's."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_shipped_plugins"
    return packaged if packaged.is_dir() else package.parent / "plugins"


def discover_plugins(
    policies: Policies,
    plugin_paths: Sequence[Path] = (),
    *,
    shipped: bool = True,
    entry_points: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Discovery:
    """Load every plugin from every source and validate it against ``policies``."""
    dirs = [shipped_plugin_dir()] if shipped else []
    dirs += list(plugin_paths)
    loaded, problems = load_from_dirs(dirs)
    if entry_points:
        found, more = load_entry_points()
        loaded += found
        problems += more
    return validate(loaded, policies, problems, environ=os.environ if environ is None else environ)


# -- loading ------------------------------------------------------------------------------


def load_from_dirs(dirs: Iterable[Path]) -> tuple[list[Plugin], list[PluginProblem]]:
    plugins: list[Plugin] = []
    problems: list[PluginProblem] = []
    for directory in dirs:
        if not directory.is_dir():
            problems.append(
                PluginProblem(
                    source=str(directory),
                    message="plugin directory not found (check GLADD_PLUGIN_PATHS)",
                )
            )
            continue
        for path in sorted(directory.glob("*.py")):
            if path.name.startswith("_"):
                continue
            result = load_file(path)
            if isinstance(result, PluginProblem):
                problems.append(result)
            else:
                plugins.append(result)
    return plugins, problems


def load_entry_points() -> tuple[list[Plugin], list[PluginProblem]]:
    plugins: list[Plugin] = []
    problems: list[PluginProblem] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        source = f"entry point {ep.name} = {ep.value} (distribution {dist})"
        try:
            obj = ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not stop the daemon
            problems.append(PluginProblem(source=source, message=_import_failed(exc)))
            continue
        result = _plugin_of(obj, source)
        (problems if isinstance(result, PluginProblem) else plugins).append(result)  # type: ignore[arg-type]
    return plugins, problems


def load_file(path: Path) -> Plugin | PluginProblem:
    """The plugin a module file declares (imported once), or why there is none."""
    source = str(path)
    name = _module_name(path)
    module = sys.modules.get(name)
    if module is None or getattr(module, "__file__", None) != str(path):
        try:
            module = _import_file(name, path)
        except (Exception, SystemExit) as exc:  # a broken plugin must not stop the daemon
            return PluginProblem(source=source, message=_import_failed(exc))
    return _plugin_of(module, source)


def _module_name(path: Path) -> str:
    # Namespaced, so plugins/http.py never shadows the standard library's http.
    return f"gladd_plugin_{path.stem}"


def _import_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_failed(exc: BaseException) -> str:
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        where = f" (line {tb.tb_lineno} of {tb.tb_frame.f_code.co_filename})"
        tb = tb.tb_next
    if isinstance(exc, SyntaxError):
        where = f" (line {exc.lineno} of {exc.filename})"
        return f"import failed: SyntaxError: {exc.msg}{where}"
    return f"import failed: {type(exc).__name__}: {exc}{where}"


def _plugin_of(obj: object, source: str) -> Plugin | PluginProblem:
    found = obj if isinstance(obj, Plugin) else getattr(obj, "plugin", None)
    if not isinstance(found, Plugin):
        got = "nothing" if found is None else type(found).__name__
        return PluginProblem(
            source=source,
            message=f"no plugin declared: expected `plugin = gladd.plugins.Plugin(...)`, "
            f"found {got}",
        )
    return replace(found, source=source)


# -- validating ---------------------------------------------------------------------------


def validate(
    plugins: Iterable[Plugin],
    policies: Policies,
    problems: Iterable[PluginProblem] = (),
    *,
    environ: Mapping[str, str],
) -> Discovery:
    """Keep the plugins that are well-formed, unique and bound to the current policies."""
    found = list(problems)
    kept: list[Plugin] = []
    settings: dict[str, Any] = {}
    names: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for plugin in plugins:
        if _unconfigured(plugin, policies):
            found.append(
                PluginProblem(
                    source=plugin.source,
                    plugin=plugin.name,
                    inactive=True,
                    message=f"plugin {plugin.name} is not enabled: policies.toml has no "
                    + " or ".join(f"[services.{s}]" for s in plugin.services)
                    + f" (add it, and [plugins.{plugin.name}] settings, to use it)",
                )
            )
            continue
        problem = _identity_problem(plugin, names, kinds)
        if problem is None:
            value, binding = bind(plugin, policies, environ)
            problem = "; ".join(
                p.message if not p.path else f"{p.path}: {p.message}" for p in binding
            )
            if not problem:
                kept.append(plugin)
                settings[plugin.name] = value
                names[plugin.name] = plugin.source
                kinds.update(dict.fromkeys((k.name for k in plugin.kinds), plugin.name))
                continue
        found.append(PluginProblem(source=plugin.source, message=problem, plugin=plugin.name))
    return Discovery(plugins=tuple(kept), settings=settings, problems=tuple(found))


def _unconfigured(plugin: Plugin, policies: Policies) -> bool:
    """Declares services, none of which (nor its settings table) is in ``policies``."""
    return (
        bool(plugin.services)
        and not plugin.any_service
        and plugin.name not in policies.plugins
        and not any(s in policies.services for s in plugin.services)
    )


def _identity_problem(
    plugin: Plugin, names: Mapping[str, str], kinds: Mapping[str, str]
) -> str | None:
    if plugin.name in RESERVED_NAMES:
        return f"plugin name {plugin.name!r} is reserved for gladd's own kinds; choose another"
    if plugin.name in names:
        return (
            f"plugin name {plugin.name!r} is already taken by {names[plugin.name]}; "
            "rename one of them (names must be unique)"
        )
    seen: set[str] = set()
    for kind in plugin.kinds:
        verb = kind.name.removeprefix(f"{plugin.name}.")
        if verb == kind.name or not KIND_VERB.match(verb):
            return (
                f"task kind {kind.name!r} must be namespaced as '{plugin.name}.verb' "
                "(lower case letters, digits and _)"
            )
        if kind.name in seen:
            return f"task kind {kind.name!r} is declared twice"
        seen.add(kind.name)
        if kind.name in kinds:
            return f"task kind {kind.name!r} is already handled by plugin {kinds[kind.name]}"
    return None


def bind(
    plugin: Plugin, policies: Policies, environ: Mapping[str, str]
) -> tuple[Any, list[Problem]]:
    """``plugin``'s settings under ``policies``, and what stops it from running under them:
    a declared service missing from ``[services]``, invalid ``[plugins.NAME]`` settings."""
    problems = [
        Problem(
            path=f"services.{service}",
            message=f"plugin {plugin.name} calls service {service}, but policies.toml "
            f"defines no [services.{service}] (defined: "
            f"{', '.join(sorted(policies.services)) or 'none'}); add it",
        )
        for service in plugin.services
        if service != "*" and service not in policies.services
    ]
    value, more = plugin_settings(plugin, policies.plugins.get(plugin.name, {}), environ)
    return value, problems + more


def unknown_plugin_tables(plugins: Iterable[Plugin], policies: Policies) -> list[Problem]:
    """``[plugins.X]`` tables for which no plugin X is loaded (a typo, or a missing plugin)."""
    loaded = {p.name for p in plugins}
    return [
        Problem(
            path=f"plugins.{name}",
            message=f"no plugin named {name} is loaded "
            f"(loaded: {', '.join(sorted(loaded)) or 'none'})",
        )
        for name in sorted(policies.plugins)
        if name not in loaded
    ]
