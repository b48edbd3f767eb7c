"""What a ``partition`` needs from the kinds registry: a payload field the kind declares.

A partitioned limit reads the field from each task's payload, and a task whose payload
lacks it shares one allowance with every other such task, so a misspelt field would not
fail: it would quietly turn "at most 5 per account" into "at most 5". The policies
language cannot see that (kinds come from plugins, loaded after the file is parsed), so
``gladd check``, a live reload and ``gladd run`` call :func:`flow_problems` with the
registry they run against. A kind no loaded plugin provides is not judged: the policies
may configure kinds this node does not run.
"""

from __future__ import annotations

from pydantic import BaseModel

from gladd.errors import Problem
from gladd.executor.kinds import KindRegistry, RegisteredKind
from gladd.policies import Policies, table_key


def flow_problems(policies: Policies, kinds: KindRegistry) -> list[Problem]:
    """A kind's ``partition`` (at ``tasks.KIND.partition``) or a named limit's (at
    ``limits.NAME.partition``, once per kind that lists the limit) that a known kind's
    payload model does not declare, or that a kind without a payload model cannot promise;
    unlocated (see :func:`gladd.policies.placed`)."""
    problems: list[Problem] = []
    for name, task in policies.tasks.items():
        kind = kinds.get(name)
        if task.partition is not None and kind is not None:
            problems += _partition_problems(
                f"tasks.{table_key(name)}.partition", task.partition, kind
            )
    for limit_name, limit in policies.limits.items():
        if limit.partition is None:
            continue
        path = f"limits.{table_key(limit_name)}.partition"
        for name, task in policies.tasks.items():
            kind = kinds.get(name)
            if limit_name in task.limits and kind is not None:
                problems += _partition_problems(path, limit.partition, kind)
    return problems


def _partition_problems(path: str, field: str, kind: RegisteredKind) -> list[Problem]:
    model = kind.payload_model
    if model is None:
        return [
            Problem(
                path=path,
                message=f"kind {kind.name} has no payload schema, so nothing says its "
                f"payloads carry {field!r}; declare the field in the kind's payload model "
                f"(TaskKind(payload=...) in {_owner(kind)}), or remove partition",
            )
        ]
    if field in _payload_keys(model):
        return []
    declared = ", ".join(sorted(_payload_keys(model))) or "none"
    return [
        Problem(
            path=path,
            message=f"kind {kind.name}'s payload has no field {field!r} (its fields: "
            f"{declared}); declare the field in the kind's payload model "
            f"({model.__name__} in {_owner(kind)}), or partition by one it has",
        )
    ]


def _owner(kind: RegisteredKind) -> str:
    return "gladd itself" if kind.plugin == "gladd" else f"plugin {kind.plugin}"


def _payload_keys(model: type[BaseModel]) -> set[str]:
    """The top-level keys a payload of ``model`` may carry: each field's name and alias."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys.add(name)
        if info.alias:
            keys.add(info.alias)
        if isinstance(info.validation_alias, str):
            keys.add(info.validation_alias)
    return keys
