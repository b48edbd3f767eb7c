"""Validating enqueues against the kinds catalogue: a client's checks without plugin code.

The daemon, having loaded its plugins, publishes every kind it serves in the store
(:func:`kind_specs`, :meth:`gladd.store.Store.publish_kinds`): name, plugin, description,
and the payload's JSON Schema as pydantic gives it. An application's client reads that
catalogue instead of importing plugins (issue 15) and checks each enqueue against it:

- the built-in kinds (:func:`~gladd.executor.kinds.builtin_kinds`, no plugin code) are
  checked by their pydantic models, as in the daemon;
- a kind of the catalogue is checked by its JSON Schema (jsonschema-rs). Where several
  nodes published different schemas for one kind (a rolling deploy), a payload must suit
  every one: any node serving the kind may claim the task;
- any other kind is refused, naming the kinds the catalogue had and when it was published.

What a schema cannot say (a plugin's custom pydantic validators, its enqueue ``check``
against the policies) is checked by the daemon at the start of every attempt, before the
handler runs: a payload that passed here but fails there makes the task dead at once, with
the daemon's message in its error history (:mod:`gladd.executor.attempt`). The catalogue is cached
(:class:`CatalogueKinds`) and read again when a kind is unknown or the copy is old.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema_rs

from gladd.errors import TaskRejected
from gladd.executor.kinds import KindRegistry, RegisteredKind, TaskContext, builtin_kinds
from gladd.store import KindSpec, PublishedKind, Store

MAX_AGE = 10.0
"""Seconds a client keeps its copy of the catalogue before reading it again."""
UNKNOWN_REREAD = 1.0
"""Seconds between re-reads prompted by an unknown kind: a new plugin is found within a
second, and a caller repeating a wrong kind costs the store one read a second at most."""
MAX_PROBLEMS = 5
"""Problems one refusal names (a payload can be wrong in many places)."""


def kind_specs(kinds: KindRegistry) -> list[KindSpec]:
    """What a node publishes of the kinds it serves: each with its payload's JSON Schema
    (None for a kind without a payload model: any JSON payload)."""
    specs = []
    for name in kinds.names():
        kind = kinds.require(name)
        model = kind.payload_model
        specs.append(
            KindSpec(
                name=kind.name,
                plugin=kind.plugin,
                description=kind.description,
                payload_schema=None if model is None else model.model_json_schema(),
                services=kind.services,
            )
        )
    return specs


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalogue:
    """The catalogue as a client read it: every node's rows, and when it was read."""

    rows: tuple[PublishedKind, ...]
    read_at: float  # the client's monotonic clock

    @property
    def published_at(self) -> datetime | None:
        """The newest publication in it (None: no daemon ever published to this store)."""
        return max((r.published_at for r in self.rows), default=None)

    def names(self) -> set[str]:
        return {r.name for r in self.rows}

    def registered(self) -> list[RegisteredKind]:
        """Each kind of the catalogue as the client checks it (built-ins left out)."""
        builtins = {k.name for k in builtin_kinds()}
        by_name: dict[str, list[PublishedKind]] = {}
        for row in self.rows:
            if row.name not in builtins:
                by_name.setdefault(row.name, []).append(row)
        return [_registered(name, rows) for name, rows in sorted(by_name.items())]

    def origin(self) -> str:
        """Where the kinds came from, for a refusal's message."""
        when = self.published_at
        if when is None:
            return (
                "no gladd daemon has published its kinds to this store yet, so only the "
                "built-in kinds are known here: start the daemon on this store (it publishes "
                "its plugins' kinds at start), or pass kinds= to the client"
            )
        nodes = ", ".join(sorted({r.node for r in self.rows}))
        return (
            f"not in the catalogue the daemon published at {when.isoformat(timespec='seconds')}"
            f" (nodes: {nodes}); is its plugin configured, and has the daemon started since?"
        )


class CatalogueKinds(KindRegistry):
    """The kinds a client checks enqueues against: the built-ins and the catalogue, read
    from ``store`` by :meth:`refresh_for` before each enqueue (cached, see :data:`MAX_AGE`)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_age: float = MAX_AGE,
    ) -> None:
        super().__init__(builtin_kinds())
        self._store = store
        self._clock = clock
        self._max_age = max_age
        self._catalogue: Catalogue | None = None
        self.reads = 0
        """Times the catalogue was read from the store."""

    async def refresh_for(self, kinds: Iterable[object]) -> None:
        """Read the catalogue again when the copy is older than ``max_age``, or when one of
        ``kinds`` (the kinds about to be enqueued) is not known and the last read is at
        least :data:`UNKNOWN_REREAD` old."""
        now = self._clock()
        catalogue = self._catalogue
        if catalogue is not None:
            age = now - catalogue.read_at
            unknown = any(isinstance(k, str) and self.get(k) is None for k in kinds)
            if age < self._max_age and not (unknown and age >= UNKNOWN_REREAD):
                return
        rows = await self._store.kinds_catalogue()
        self.reads += 1
        self._load(Catalogue(rows=tuple(rows), read_at=now))

    def _load(self, catalogue: Catalogue) -> None:
        kinds = {k.name: k for k in builtin_kinds()}
        kinds.update((k.name, k) for k in catalogue.registered())
        self._kinds = kinds
        self._catalogue = catalogue

    def require(self, name: str) -> RegisteredKind:
        kind = self.get(name)
        if kind is not None:
            return kind
        known = ", ".join(self.names()) or "none"
        origin = (self._catalogue or Catalogue(rows=(), read_at=0.0)).origin()
        raise TaskRejected(f"unknown task kind {name!r}: {origin} (known kinds: {known})")


def _registered(name: str, rows: Sequence[PublishedKind]) -> RegisteredKind:
    """One catalogue kind as the client checks it (its handler runs only in the daemon)."""
    first = rows[0]
    variants: dict[str, list[PublishedKind]] = {}
    for row in rows:
        variants.setdefault(json.dumps(row.payload_schema, sort_keys=True), []).append(row)
    checks = [_schema_check(name, published) for published in variants.values()]
    several = len(variants) > 1

    def validate(payload: Any) -> None:
        for check in checks:
            check(payload, several)

    return RegisteredKind(
        name=name,
        handler=_runs_in_the_daemon,
        plugin=first.plugin,
        services=tuple(sorted({s for r in rows for s in r.services})),
        description=first.description,
        validator=validate,
    )


def _schema_check(name: str, rows: Sequence[PublishedKind]) -> Callable[[Any, bool], None]:
    """A check of payloads against the schema ``rows`` (one or more nodes) published."""
    schema = rows[0].payload_schema
    nodes = ", ".join(r.node for r in rows)
    if schema is None:
        return lambda payload, several: None
    try:
        validator = jsonschema_rs.validator_for(schema)
    except (jsonschema_rs.ValidationError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0]

        def broken(payload: Any, several: bool) -> None:
            raise TaskRejected(
                f"payload for {name} cannot be checked: the schema node {nodes} published for "
                f"it is not a valid JSON Schema ({reason}); nothing was stored. Restart that "
                "node's daemon to publish it again, or report the plugin's payload model"
            )

        return broken

    def check(payload: Any, several: bool) -> None:
        problems = [p for error in validator.iter_errors(payload) for p in _problems(error)]
        if not problems:
            return
        shown = "; ".join(problems[:MAX_PROBLEMS])
        if len(problems) > MAX_PROBLEMS:
            shown += f"; and {len(problems) - MAX_PROBLEMS} more"
        against = (
            f" (by the schema node {nodes} published: nodes differ on this kind's schema, as "
            "during a rolling deploy, and a task may run on any of them, so a payload must "
            "suit every one)"
            if several
            else ""
        )
        raise TaskRejected(f"payload for {name} is invalid: {shown}{against}")

    return check


def _problems(error: jsonschema_rs.ValidationError) -> list[str]:
    """One schema error as ``field: why`` lines, in the daemon's (pydantic's) shape."""
    path = [str(p) for p in error.instance_path]
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        return [f"{'.'.join([*path, str(kind.property)])}: Field required"]
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
        return [
            f"{'.'.join([*path, str(u)])}: Extra inputs are not permitted" for u in kind.unexpected
        ]
    return [f"{'.'.join(path) or 'payload'}: {error.message}"]


def _runs_in_the_daemon(ctx: TaskContext, payload: Any) -> Any:
    raise RuntimeError(f"task kind {ctx.task.kind} runs in the daemon, not in a client")
