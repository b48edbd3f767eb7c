"""What ``gladd`` exports stays importable; an old name is an alias, not a second class."""

from __future__ import annotations

import gladd
from gladd.executor.kinds import RegisteredKind
from gladd.plugins import TaskKind


def test_every_exported_name_resolves() -> None:
    for name in gladd.__all__:
        assert getattr(gladd, name) is not None, name
    assert sorted(gladd.__all__) == sorted(set(gladd.__all__))


def test_kind_is_the_executors_registered_kind_and_plugins_declare_task_kinds() -> None:
    assert gladd.Kind is RegisteredKind
    assert gladd.TaskKind is TaskKind
    assert TaskKind is not RegisteredKind
