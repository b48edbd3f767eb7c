"""What ``[schedules.NAME]`` needs from the kinds registry: its kind, and a payload it takes.

The policies language cannot judge these (plugins, and so kinds, are loaded after the file
is parsed), so ``gladd check`` and a live reload call :func:`schedule_problems` with the
registry they run against: a schedule that could only enqueue refusals is refused up front,
with the same checks :meth:`TaskService.enqueue <gladd.executor.service.TaskService.enqueue>`
makes, rather than failing at every tick.
"""

from __future__ import annotations

from gladd.errors import Problem, TaskRejected
from gladd.executor.kinds import KindRegistry
from gladd.policies import Policies, table_key


def schedule_problems(policies: Policies, kinds: KindRegistry) -> list[Problem]:
    """An unknown kind (at ``schedules.NAME.kind``) and a payload the kind refuses (at
    ``schedules.NAME.payload``), for each schedule; unlocated (see
    :func:`gladd.policies.placed`)."""
    problems: list[Problem] = []
    for name, schedule in policies.schedules.items():
        path = f"schedules.{table_key(name)}"
        kind = kinds.get(schedule.kind)
        if kind is None:
            known = ", ".join(kinds.names()) or "none"
            problems.append(
                Problem(
                    path=f"{path}.kind",
                    message=f"no task kind {schedule.kind!r} is known (known kinds: {known})",
                )
            )
            continue
        try:
            kind.check(kind.parse(schedule.payload), policies)
        except TaskRejected as exc:
            problems.append(Problem(path=f"{path}.payload", message=str(exc)))
    return problems
