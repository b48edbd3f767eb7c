"""``gladd check``'s look at async handlers for calls that would block the event loop.

A blocked loop was the seed app's first critical bug: a synchronous HTTP client inside an
async handler stalls every other task. This reads each async handler's source (``ast``)
and names the known blocking calls in it. It is a heuristic — it sees only the handler's
own body and the module's imports — so it warns, it never refuses. Calls inside a nested
``def`` or ``lambda`` are skipped: those are what one hands to ``anyio.to_thread``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterable
from types import ModuleType

from gladd.plugins.api import Plugin

BLOCKING: dict[str, str] = {
    "time.sleep": "use `await anyio.sleep(...)`",
    "urllib.request.urlopen": "use `ctx.http[SERVICE]` (an async httpx client)",
    "httpx.Client": "use `ctx.http[SERVICE]` (an async httpx client)",
    "httpx.get": "use `ctx.http[SERVICE]` (an async httpx client)",
    "httpx.post": "use `ctx.http[SERVICE]` (an async httpx client)",
    "httpx.request": "use `ctx.http[SERVICE]` (an async httpx client)",
    "subprocess.run": "use `await anyio.run_process(...)`",
    "subprocess.call": "use `await anyio.run_process(...)`",
    "subprocess.check_call": "use `await anyio.run_process(...)`",
    "subprocess.check_output": "use `await anyio.run_process(...)`",
    "subprocess.Popen": "use `await anyio.open_process(...)`",
    "os.system": "use `await anyio.run_process(...)`",
    "socket.create_connection": "use `await anyio.connect_tcp(...)`",
    "builtins.open": "use `await anyio.open_file(...)` or `anyio.to_thread.run_sync`",
    "builtins.input": "handlers cannot read from a terminal",
}
BLOCKING_MODULES: dict[str, str] = {
    "requests": "use `ctx.http[SERVICE]` (an async httpx client), not requests",
}
_ADVICE_SYNC = "or make the handler a plain `def` so it runs in a worker thread"


def blocking_call_warnings(plugins: Iterable[Plugin]) -> list[str]:
    """One line per known blocking call found in an async handler of ``plugins``."""
    warnings: list[str] = []
    for plugin in plugins:
        for kind in plugin.kinds:
            if not kind.is_async:
                continue
            handler = inspect.unwrap(kind.handler)
            warnings += [
                f"{where}: async handler of {kind.name} calls {name}(), which blocks the event "
                f"loop; {advice}, {_ADVICE_SYNC}"
                for where, name, advice in _scan(handler)
            ]
    return warnings


def _scan(handler: object) -> list[tuple[str, str, str]]:
    try:
        lines, first = inspect.getsourcelines(handler)  # type: ignore[arg-type]
        file = inspect.getsourcefile(handler) or "?"  # type: ignore[arg-type]
    except (OSError, TypeError):
        return []
    tree = ast.parse(textwrap.dedent("".join(lines)))
    if not tree.body or not isinstance(tree.body[0], ast.AsyncFunctionDef):
        return []
    aliases = _aliases(inspect.getmodule(handler))
    found = []
    for call in sorted(_calls(tree.body[0]), key=lambda c: (c.lineno, c.col_offset)):
        name = _qualified(call.func, aliases)
        if name is None:
            continue
        advice = BLOCKING.get(name) or BLOCKING_MODULES.get(name.split(".")[0])
        if advice is not None:
            found.append((f"{file}:{first + call.lineno - 1}", name, advice))
    return found


def _calls(function: ast.AsyncFunctionDef) -> Iterable[ast.Call]:
    """Calls in the function's own body, not in nested functions or lambdas."""
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _aliases(module: ModuleType | None) -> dict[str, str]:
    """Local name → qualified name, from the module's imports (``import x as y``...)."""
    aliases: dict[str, str] = {"open": "builtins.open", "input": "builtins.input"}
    if module is None:
        return aliases
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return aliases
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _qualified(func: ast.expr, aliases: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    head = aliases.get(func.id)
    if head is None:
        return None
    return ".".join([head, *reversed(parts)])
