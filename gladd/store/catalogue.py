"""The kinds catalogue: which task kinds each daemon serves, with their payload schemas.

A daemon publishes its kinds in the store at start (:meth:`Store.publish_kinds`), so an
application's :class:`gladd.Client` can refuse an unknown kind or an invalid payload before
anything is stored without importing any plugin (issue 15). Rows are per node: a node's
publication replaces all its earlier rows at once, so a kind its plugins no longer provide
disappears from what it publishes. What a client makes of several nodes' rows is
:mod:`gladd.executor.catalogue`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

JSON = Any


@dataclass(frozen=True, slots=True, kw_only=True)
class KindSpec:
    """One kind as a node publishes it."""

    name: str
    plugin: str  # "gladd" for the built-ins
    description: str = ""
    payload_schema: JSON = None
    """The payload's JSON Schema (pydantic's ``model_json_schema()``); None: any JSON."""
    services: tuple[str, ...] = ()
    """The services its plugin declares: a pause or cooldown of one holds the kind back."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedKind:
    """One kind as one node published it, read back from the store."""

    name: str
    plugin: str
    description: str
    payload_schema: JSON
    services: tuple[str, ...]
    node: str
    published_at: datetime

    @property
    def spec(self) -> KindSpec:
        return KindSpec(
            name=self.name,
            plugin=self.plugin,
            description=self.description,
            payload_schema=self.payload_schema,
            services=self.services,
        )


def published(node: str, kinds: list[KindSpec], now: datetime) -> list[PublishedKind]:
    """``kinds`` as ``node`` published them at ``now``, in catalogue order; one kind named
    twice is a programming error (ValueError), as a node serves each kind once."""
    names = [k.name for k in kinds]
    if len(set(names)) != len(names):
        raise ValueError(f"node {node} publishes a kind twice: {sorted(names)}")
    return sorted(
        (
            PublishedKind(
                name=k.name,
                plugin=k.plugin,
                description=k.description,
                payload_schema=k.payload_schema,
                services=tuple(k.services),
                node=node,
                published_at=now,
            )
            for k in kinds
        ),
        key=catalogue_order,
    )


def catalogue_order(kind: PublishedKind) -> tuple[str, str]:
    """How :meth:`Store.kinds_catalogue` orders its rows: by kind name, then node."""
    return (kind.name, kind.node)
