"""Errors of calls plugins make to outside services; see the tree in :mod:`gladd.errors`.

Each names the plugin and the service, so a dead task's history says who failed and how
to fix it. Each also speaks the executor's language:

- :class:`ServiceRefused` is a ``FailTask``: a 401, 404 or 422 will not get better by
  asking again, so the task goes dead at once;
- :class:`ServiceUnavailable` is a ``RetryableStatus``: the executor's persisted retry
  treats it as the 5xx, 429 or 408 it carries;
- :class:`ServiceTimeout` is a ``TimeoutError``: retried as a timeout.

The plugin name is filled in by the host when the error leaves the handler, so helpers
that only see a response need not know which plugin called them.
"""

from __future__ import annotations

from typing import Any

from gladd.errors import PluginError
from gladd.executor.kinds import FailTask
from gladd.resilience.classify import RetryableStatus


class ServiceCallError(PluginError):
    """A plugin's call to service ``service`` failed; ``str()`` names both."""

    def __init__(
        self, service: str, detail: str, *, plugin: str | None = None, hint: str | None = None
    ) -> None:
        Exception.__init__(self, detail)  # not super(): the mixins' __init__ take other args
        self.service = service
        self.detail = detail
        self.plugin = plugin
        self.hint = hint

    def __str__(self) -> str:
        who = f"{self.plugin}: " if self.plugin else ""
        hint = self.hint
        if hint is not None and self.plugin is not None:
            hint = hint.replace("{plugin}", self.plugin)
        return f"{who}service {self.service} {self.detail}" + (f": {hint}" if hint else "")


class ServiceRefused(ServiceCallError, FailTask):
    """The service answered with a status that retrying cannot fix: the task goes dead."""

    def __init__(
        self,
        service: str,
        detail: str,
        *,
        status: int | None = None,
        plugin: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(service, detail, plugin=plugin, hint=hint)
        self.status = status


class ServiceUnavailable(ServiceCallError, RetryableStatus):
    """A retryable status (5xx, 429, 408) the transport's retries did not get past."""

    def __init__(
        self,
        service: str,
        detail: str,
        *,
        response: Any,
        status: int,
        retry_after: float | None = None,
        plugin: str | None = None,
    ) -> None:
        ServiceCallError.__init__(self, service, detail, plugin=plugin)
        self.response = response
        self.status = status
        self.retry_after = retry_after


class ServiceTimeout(ServiceCallError, TimeoutError):
    """The service did not answer within the policies' attempt timeout or total deadline."""
