"""What changed between two generations of policies, as an operator reads it.

``retry.http.attempts 3 → 5``, ``breaker.cloudinary added``, ``services.old removed``.
Each change knows whether its field is restart-only (``json_schema_extra={"restart": True}``
in the model), so a reload can refuse rather than half-apply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from gladd.policies import Policies

ChangeKind = Literal["changed", "added", "removed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    path: str
    kind: ChangeKind
    old: Any = None
    new: Any = None
    restart: bool = False

    def render(self) -> str:
        if self.kind == "changed":
            return f"{self.path} {_show(self.old)} → {_show(self.new)}"
        return f"{self.path} {self.kind}"


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def diff_policies(old: Policies, new: Policies) -> list[Change]:
    """Every change from ``old`` to ``new``, in the order the model declares its fields."""
    return _diff_model(old, new, "")


def _join(prefix: str, key: str) -> str:
    shown = f'"{key}"' if "." in key or " " in key else key
    return f"{prefix}.{shown}" if prefix else shown


def _diff_model(old: BaseModel, new: BaseModel, prefix: str) -> list[Change]:
    # Compare the models, but show values as the file writes them ("200ms", not 0.2).
    old_shown = old.model_dump(mode="json", by_alias=True)
    new_shown = new.model_dump(mode="json", by_alias=True)
    changes: list[Change] = []
    for name, field in type(old).model_fields.items():
        key = field.alias or name
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        extra = field.json_schema_extra
        restart = isinstance(extra, dict) and extra.get("restart") is True
        changes += _diff_value(
            a, b, old_shown[key], new_shown[key], _join(prefix, key), restart=restart
        )
    return changes


def _diff_value(
    a: Any, b: Any, a_shown: Any, b_shown: Any, path: str, *, restart: bool
) -> list[Change]:
    if isinstance(a, BaseModel) and isinstance(b, BaseModel) and type(a) is type(b):
        return _diff_model(a, b, path)
    if isinstance(a, dict) and isinstance(b, dict):
        changes = [
            Change(path=_join(path, key), kind="removed", restart=restart)
            for key in a.keys() - b.keys()
        ]
        changes += [
            Change(path=_join(path, key), kind="added", restart=restart)
            for key in b.keys() - a.keys()
        ]
        for key in a.keys() & b.keys():
            if a[key] != b[key]:
                changes += _diff_value(
                    a[key], b[key], a_shown[key], b_shown[key], _join(path, key), restart=restart
                )
        return sorted(changes, key=lambda c: c.path)
    return [Change(path=path, kind="changed", old=a_shown, new=b_shown, restart=restart)]
