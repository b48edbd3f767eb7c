"""The policies language (``model``), its loader (``load``) and key locator (``locate``)."""

from gladd.policies.load import LoadedPolicies, load_policies, parse_policies, placed
from gladd.policies.model import (
    BreakerPolicy,
    BudgetPolicy,
    DatabasePolicy,
    ExecutorPolicy,
    Policies,
    RetryPolicy,
    SchedulePolicy,
    ServiceBinding,
    TaskBinding,
    table_key,
)

__all__ = [
    "BreakerPolicy",
    "BudgetPolicy",
    "DatabasePolicy",
    "ExecutorPolicy",
    "LoadedPolicies",
    "Policies",
    "RetryPolicy",
    "SchedulePolicy",
    "ServiceBinding",
    "TaskBinding",
    "load_policies",
    "parse_policies",
    "placed",
    "table_key",
]
