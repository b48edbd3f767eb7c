"""Every check of the policies that needs the kinds registry, as one list.

``gladd check``, a live reload and ``gladd run`` must refuse the same files for the same
reasons, so they all call :func:`registry_problems` rather than each check in turn; a new
registry check joins here once. The checks themselves live beside what they judge:
:mod:`.schedule_checks` (a schedule's kind and payload), :mod:`.flow_checks` (a
partition's payload field).
"""

from __future__ import annotations

from gladd.errors import Problem
from gladd.executor.flow_checks import flow_problems
from gladd.executor.kinds import KindRegistry
from gladd.executor.schedule_checks import schedule_problems
from gladd.policies import Policies


def registry_problems(policies: Policies, kinds: KindRegistry) -> list[Problem]:
    """The schedules' problems, then flow control's; unlocated (see
    :func:`gladd.policies.placed`)."""
    return [*schedule_problems(policies, kinds), *flow_problems(policies, kinds)]
