"""The policies language: what is accepted, and how each mistake is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from gladd.errors import PolicyError
from gladd.policies import load_policies, model, parse_policies
from gladd.settings import shipped_policies

REPO = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policies(text.encode(), source="policies.toml")
    return str(caught.value).splitlines()


def test_shipped_policies_are_valid_and_define_the_documented_names() -> None:
    loaded = load_policies(REPO / "policies.toml")
    p = loaded.policies
    assert set(p.retry) == {"db", "http", "task"}
    assert p.executor.task_timeout == 900.0
    assert p.database.query_timeout == 5.0
    assert p.breaker["default"].failures == 5
    assert p.breaker["default"].open_for == 60.0
    assert len(loaded.sha256) == 64


def test_shipped_default_is_the_repository_file() -> None:
    assert shipped_policies().read_bytes() == (REPO / "policies.toml").read_bytes()


def test_empty_file_gives_the_seed_defaults() -> None:
    p = parse_policies(b"", source="policies.toml").policies
    assert p.executor.task_timeout == 900.0
    assert p.database.query_timeout == 5.0
    assert p.executor.concurrency == 10


def test_every_key_of_the_model_appears_in_the_shipped_file() -> None:
    text = (REPO / "policies.toml").read_text()
    sections = {
        "executor": model.ExecutorPolicy,
        "database": model.DatabasePolicy,
        "retry.db": model.RetryPolicy,
        "breaker.default": model.BreakerPolicy,
        "services.example": model.ServiceBinding,
        'tasks."gladd.sleep"': model.TaskBinding,
        "pool_alerts": model.PoolAlertPolicy,
        "event_loop": model.EventLoopPolicy,
        "schedules.*": model.SchedulePolicy,
        "limits.*": model.LimitPolicy,
    }
    missing = [
        f"{section}.{field.alias or name}"
        for section, cls in sections.items()
        for name, field in cls.model_fields.items()
        if f"{field.alias or name} =" not in text and f"# {field.alias or name} =" not in text
    ]
    assert missing == []


def test_value_errors_name_file_line_column_and_key_path() -> None:
    text = "[retry.http]\nattempts = 0\n"
    assert problems(text) == ["policies.toml:2:12: retry.http.attempts: must be ≥ 1 (got 0)"]


def test_every_error_is_listed_in_file_order() -> None:
    text = """
[executor]
concurrency = 0
task_timeout = "15 minutes"

[retry.http]
jitter = "fullish"
attemps = 3
budget = { ratio = 1.5, window = "10s" }
"""
    assert problems(text) == [
        "policies.toml:3:15: executor.concurrency: must be ≥ 1 (got 0)",
        "policies.toml:4:16: executor.task_timeout: '15 minutes' is not a duration: use a "
        'number and a unit (ms, s, m, h, d), like "500ms", "5s", "15m", "1h30m" or "7d"',
        "policies.toml:7:10: retry.http.jitter: must be one of 'none', 'full' or 'equal' "
        "(got 'fullish')",
        "policies.toml:8:11: retry.http.attemps: unknown key 'attemps'; did you mean 'attempts'?",
        "policies.toml:9:20: retry.http.budget.ratio: must be ≤ 1.0 (got 1.5)",
    ]


def test_unknown_section_lists_what_is_allowed() -> None:
    [line] = problems("[retries.http]\nattempts = 3\n")
    assert line.startswith(
        "policies.toml:1:1: retries: unknown key 'retries'; did you mean 'retry'?"
    )


def test_syntax_errors_are_located() -> None:
    [line] = problems("[executor]\nconcurrency = = 3\n")
    assert line.startswith("policies.toml:2:15: TOML syntax: Invalid value")


def test_unterminated_table_at_end_is_located() -> None:
    [line] = problems("[executor\n")
    assert line.startswith("policies.toml:1:")
    assert "TOML syntax" in line


def test_quoted_task_kinds_are_located() -> None:
    text = '[tasks."cloud.upload"]\ntimeout = 5\n'
    assert problems(text) == [
        'policies.toml:2:11: tasks."cloud.upload".timeout: must be a duration string like '
        '"500ms", "5s", "15m", "1h30m" or "7d" (got 5)'
    ]


def test_dangling_references_name_what_is_defined() -> None:
    text = """
[retry.http]
attempts = 3

[services.cloud]
retry = "htp"
breaker = "cloud"
"""
    assert problems(text) == [
        "policies.toml:6:9: services.cloud.retry: no [retry.htp] is defined (defined: http)",
        "policies.toml:7:11: services.cloud.breaker: no [breaker.cloud] is defined (defined: none)",
    ]


def test_a_dotted_service_name_is_located_at_its_own_key() -> None:
    text = """
[services."api.example"]
retry = "missing"
timeout = "0s"
"""
    assert problems(text) == [
        'policies.toml:3:9: services."api.example".retry: no [retry.missing] is defined '
        "(defined: none)",
        'policies.toml:4:11: services."api.example".timeout: must be longer than 0s',
    ]


def test_attempt_timeout_longer_than_the_total_deadline_is_impossible() -> None:
    text = """
[retry.http]
deadline = "30s"

[services.cloud]
retry = "http"
timeout = "1m"
"""
    [line] = problems(text)
    assert line.startswith("policies.toml:7:11: services.cloud.timeout: one attempt's timeout (1m)")
    assert "total deadline of retry.http (30s)" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[executor]\nheartbeat = "1m"\nlease = "30s"\n',
            "policies.toml:2:13: executor.heartbeat: must be shorter than executor.lease (30s)",
        ),
        (
            '[retry.x]\nbase_delay = "5s"\nmax_delay = "1s"\n',
            "policies.toml:3:13: retry.x.max_delay: must be ≥ base_delay (5s) (got 1s)",
        ),
        (
            '[breaker.b]\nfallback = "static"\n',
            'policies.toml:1:1: breaker.b.fallback_value: is required when fallback = "static"',
        ),
        (
            "[pool_alerts]\nutilization = { warn = 0.9, critical = 0.5 }\n",
            "policies.toml:2:24: pool_alerts.utilization.warn: must be ≤ critical (0.5) (got 0.9)",
        ),
        (
            '[retry.x]\nexceptions = ["not an exception"]\n',
            "policies.toml:2:14: retry.x.exceptions[0]: 'not an exception' is not an exception",
        ),
        (
            "[breaker.b]\nfailure_ratio = 1.5\n",
            "policies.toml:2:17: breaker.b.failure_ratio: must be ≤ 1.0 (got 1.5)",
        ),
        ("schema_version = 2\n", "policies.toml:1:18: schema_version: must be one of 1 (got 2)"),
    ],
)
def test_impossible_values(text: str, expected: str) -> None:
    [line] = problems(text)
    assert line.startswith(expected)


def test_wrong_types_say_what_was_expected() -> None:
    assert problems('[executor]\nconcurrency = "ten"\n') == [
        "policies.toml:2:15: executor.concurrency: must be an integer (got 'ten')"
    ]


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="file not found"):
        load_policies(tmp_path / "absent.toml")
    with pytest.raises(PolicyError, match="is a directory"):
        load_policies(tmp_path)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyError, match="is not UTF-8"):
        load_policies(binary)


def test_policies_are_frozen() -> None:
    p = parse_policies(b"", source="x").policies
    with pytest.raises(ValueError, match="frozen"):
        p.executor.concurrency = 3  # type: ignore[misc]


def test_unreadable_file_says_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root reads any file, so the kernel's refusal is simulated at the one call that reads.
    path = tmp_path / "policies.toml"
    path.write_text("")

    def refuse(path: Path) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("gladd.policies.read._open", refuse)
    with pytest.raises(PolicyError, match="cannot be read: permission denied"):
        load_policies(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[executor]\nretry = "r"\n[retry.r]\ndeadline = "1m"\n',
            "policies.toml:1:1: executor.task_timeout: one attempt's timeout (15m) is longer "
            "than the total deadline of retry.r (1m)",
        ),
        (
            '[database]\nquery_timeout = "30s"\nretry = "r"\n[retry.r]\ndeadline = "10s"\n',
            "policies.toml:2:17: database.query_timeout: one attempt's timeout (30s) is longer "
            "than the total deadline of retry.r (10s)",
        ),
        (
            '[executor]\ntask_timeout = "0s"\n',
            "policies.toml:2:16: executor.task_timeout: must be longer than 0s",
        ),
    ],
)
def test_timeouts_must_fit_their_retry_deadline(text: str, expected: str) -> None:
    [line] = problems(text)
    assert line.startswith(expected)


def test_a_schedule_is_parsed_with_its_defaults() -> None:
    text = (
        '[schedules.nightly]\ncron = "0 3 * * *"\ntimezone = "Europe/Berlin"\nkind = "crm.sync"\n'
    )
    s = parse_policies(text.encode(), source="policies.toml").policies.schedules["nightly"]
    assert (s.cron, s.every, s.timezone, s.kind) == ("0 3 * * *", None, "Europe/Berlin", "crm.sync")
    assert (s.payload, s.priority, s.jitter) == ({}, None, 0.0)
    assert (s.catch_up, s.catch_up_window, s.overlap, s.paused) == (
        "latest",
        6 * 3600.0,
        "skip",
        False,
    )
    every = parse_policies(
        b'[schedules.tick]\nevery = "90s"\nkind = "gladd.noop"\njitter = "5s"\n', source="p"
    ).policies.schedules["tick"]
    assert (every.every, every.jitter) == (90.0, 5.0)


def test_every_schedule_key_is_hot() -> None:
    restart = [
        name
        for name, field in model.SchedulePolicy.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("restart")
    ]
    assert restart == []


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            'cron = "61 * * * *"',
            "policies.toml:3:8: schedules.s.cron: '61 * * * *' is not a cron expression: "
            "Bad minute",
        ),
        (
            'cron = "* * *"',
            "policies.toml:3:8: schedules.s.cron: '* * *' is not a 5-field cron expression",
        ),
        (
            'every = "1m"\ntimezone = "Europe/Berln"',
            "policies.toml:4:12: schedules.s.timezone: unknown time zone 'Europe/Berln'; "
            "use an IANA name like 'Europe/Berlin' or 'UTC'",
        ),
        (
            'cron = "0 3 * * *"\nevery = "1h"',
            "policies.toml:4:9: schedules.s.every: a schedule has cron or every, not both",
        ),
        (
            "priority = 1",
            "policies.toml:1:1: schedules.s.cron: is required: a cron expression, or every = a "
            'duration like "15m"',
        ),
        (
            'every = "500ms"',
            "policies.toml:3:9: schedules.s.every: must be at least 1s (got 500ms)",
        ),
        (
            'every = "1m"\njitter = "1m"',
            "policies.toml:4:10: schedules.s.jitter: must be shorter than every (1m)",
        ),
        (
            'every = "1m"\ncatch_up_window = "0s"',
            "policies.toml:4:19: schedules.s.catch_up_window: must be longer than 0s",
        ),
        (
            'every = "1m"\ncatch_up = "some"',
            "policies.toml:4:12: schedules.s.catch_up: must be one of 'latest', 'all' or 'none'",
        ),
        (
            'every = "1m"\noverlap = "queue"',
            "policies.toml:4:11: schedules.s.overlap: must be one of 'skip', 'allow' or "
            "'buffer_one'",
        ),
        (
            'every = "1m"\npriority = 5000',
            "policies.toml:4:12: schedules.s.priority: must be ≤ 1000 (got 5000)",
        ),
        (
            'every = "1m"\npaused = "maybe"',
            "policies.toml:4:10: schedules.s.paused: must be true or false (got 'maybe')",
        ),
        (
            'every = "1m"\nwhen = "now"',
            "policies.toml:4:8: schedules.s.when: unknown key 'when'",
        ),
    ],
)
def test_impossible_schedules(keys: str, expected: str) -> None:
    [line] = problems(f'[schedules.s]\nkind = "gladd.noop"\n{keys}\n')
    assert line.startswith(expected)


def test_a_schedule_without_a_kind_is_refused() -> None:
    assert problems('[schedules.s]\nevery = "1m"\n') == [
        "policies.toml:1:1: schedules.s.kind: is required"
    ]


def test_the_shipped_schedule_example_is_valid_once_uncommented() -> None:
    text = (REPO / "policies.toml").read_text()
    start = text.index("# [schedules.nightly-report]")
    end = text.index("# Settings of integration plugins")
    example = "\n".join(
        line[2:] for line in text[start:end].splitlines() if line[:3] not in ("#", "# #")
    )
    s = parse_policies(example.encode(), source="example").policies.schedules["nightly-report"]
    assert (s.cron, s.timezone, s.kind) == ("0 3 * * *", "Europe/Berlin", "gladd.sleep")
    assert load_policies(REPO / "policies.toml").policies.schedules == {}


def test_the_flow_control_keys_are_parsed_with_their_defaults() -> None:
    text = """
[limits.crm]
concurrency = 5
partition = "account_id"

[tasks."crm.sync"]
concurrency = 2
rate = "100/s"
burst = 10
limits = ["crm"]

[services.crm]
max_in_flight = 8
rate = "5000/h"
"""
    p = parse_policies(text.encode(), source="policies.toml").policies
    crm = p.limits["crm"]
    assert (crm.concurrency, crm.rate, crm.burst, crm.partition, crm.paused) == (
        5,
        None,
        1,
        "account_id",
        False,
    )
    kind = p.tasks["crm.sync"]
    assert (kind.concurrency, kind.rate, kind.burst, kind.limits) == (2, 100.0, 10, ("crm",))
    service = p.services["crm"]
    assert (service.max_in_flight, service.max_wait, service.cooldown, service.paused) == (
        8,
        5.0,
        True,
        False,
    )
    assert service.rate == pytest.approx(5000 / 3600)


def test_every_flow_control_key_is_hot() -> None:
    for cls in (model.LimitPolicy, model.TaskBinding, model.ServiceBinding):
        assert [
            name for name, field in cls.model_fields.items() if field.json_schema_extra
        ] == [], cls


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[tasks."crm.sync"]\nrate = "0/s"\n',
            "policies.toml:2:8: tasks.\"crm.sync\".rate: '0/s' allows nothing: the count and "
            "the period must be above 0",
        ),
        (
            '[tasks."crm.sync"]\nrate = "lots"\n',
            "policies.toml:2:8: tasks.\"crm.sync\".rate: 'lots' is not a rate: write a count, "
            'a slash and a period, like "100/s", "300/m", "5000/h" or "10/30s"',
        ),
        (
            "[limits.crm]\nrate = 100\n",
            'policies.toml:2:8: limits.crm.rate: must be a rate string like "100/s", "300/m", '
            '"5000/h" or "10/30s" (got 100)',
        ),
        (
            '[services.crm]\nrate = "1/0s"\n',
            "policies.toml:2:8: services.crm.rate: '1/0s' allows nothing: the count and the "
            "period must be above 0",
        ),
        (
            '[tasks."crm.sync"]\nconcurrency = 0\n',
            'policies.toml:2:15: tasks."crm.sync".concurrency: must be ≥ 1 (got 0)',
        ),
        (
            "[services.crm]\nmax_in_flight = 0\n",
            "policies.toml:2:17: services.crm.max_in_flight: must be ≥ 1 (got 0)",
        ),
        (
            '[limits.crm]\nrate = "1/s"\nburst = 0\n',
            "policies.toml:3:9: limits.crm.burst: must be ≥ 1 (got 0)",
        ),
        (
            '[limits.crm]\nconcurrency = 1\npartiton = "account_id"\n',
            "policies.toml:3:12: limits.crm.partiton: unknown key 'partiton'; did you mean "
            "'partition'?",
        ),
        (
            '[tasks."crm.sync"]\nburst = 5\n',
            'policies.toml:2:9: tasks."crm.sync".burst: has no effect: the kind sets no rate, '
            "and the burst is the size of a rate's token bucket; set a rate (like "
            'rate = "100/s") or remove burst',
        ),
        (
            "[limits.crm]\nconcurrency = 3\nburst = 1\n",
            "policies.toml:3:9: limits.crm.burst: has no effect: the limit sets no rate, and "
            "the burst is the size of a rate's token bucket; set a rate (like "
            'rate = "100/s") or remove burst',
        ),
        (
            '[tasks."crm.sync"]\npartition = "account_id"\n',
            'policies.toml:2:13: tasks."crm.sync".partition: partitions nothing: the kind sets '
            "neither concurrency nor rate; set one (it then applies per value of the field), "
            "or remove partition",
        ),
        (
            '[limits.crm]\nconcurrency = 1\n[tasks."crm.sync"]\nlimits = ["crm"]\n'
            'partition = "account_id"\n',
            'policies.toml:5:13: tasks."crm.sync".partition: partitions nothing: the kind sets '
            "neither concurrency nor rate (a [limits.NAME] it lists has a partition of its "
            "own); set one (it then applies per value of the field), or remove partition",
        ),
        (
            '[limits.crm]\npaused = true\npartition = "account_id"\n',
            "policies.toml:3:13: limits.crm.partition: partitions nothing: the limit sets "
            "neither concurrency nor rate; set one (it then applies per value of the field), "
            "or remove partition",
        ),
        (
            '[tasks."crm.sync"]\nconcurrency = 2\npartition = "account.id"\n',
            "policies.toml:3:13: tasks.\"crm.sync\".partition: 'account.id' is not a payload "
            "field name; name a top-level field of the payload, like 'account_id'",
        ),
        (
            '[tasks."crm.sync"]\nlimits = ["crm"]\n',
            'policies.toml:2:10: tasks."crm.sync".limits[0]: no [limits.crm] is defined '
            "(defined: none)",
        ),
        (
            '[limits.crm]\nconcurrency = 1\n[tasks."crm.sync"]\nlimits = ["crm", "crm"]\n',
            "policies.toml:4:10: tasks.\"crm.sync\".limits[1]: lists 'crm' twice; a kind "
            "counts once against a limit",
        ),
        (
            '[tasks."crm.sync"]\npaused = "maybe"\n',
            "policies.toml:2:10: tasks.\"crm.sync\".paused: must be true or false (got 'maybe')",
        ),
        (
            '[services.crm]\ncooldown = "sometimes"\n',
            "policies.toml:2:12: services.crm.cooldown: must be true or false (got 'sometimes')",
        ),
    ],
)
def test_impossible_flow_control(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_every_flow_control_problem_is_listed_at_once() -> None:
    text = """
[limits.crm]
concurrency = 5
partition = "account_id"

[limits.idle]
partition = "tenant"

[tasks."crm.sync"]
limits = ["crm", "crn"]
burst = 3
"""
    assert problems(text) == [
        "policies.toml:7:13: limits.idle.partition: partitions nothing: the limit sets "
        "neither concurrency nor rate; set one (it then applies per value of the field), "
        "or remove partition",
        'policies.toml:10:10: tasks."crm.sync".limits[1]: no [limits.crn] is defined '
        "(defined: crm, idle)",
        'policies.toml:11:9: tasks."crm.sync".burst: has no effect: the kind sets no rate, '
        "and the burst is the size of a rate's token bucket; set a rate (like "
        'rate = "100/s") or remove burst',
    ]


@pytest.mark.parametrize(
    "text",
    [
        # A named limit no kind lists is allowed, as an unused retry policy is: it may be
        # defined before the kinds that will count against it, or kept while they are off.
        "[limits.spare]\nconcurrency = 3\n",
        '[limits.crm]\nrate = "10/s"\nburst = 20\npartition = "account_id"\n',
        "[limits.off]\npaused = true\n",
        '[tasks."crm.sync"]\nrate = "5000/h"\nburst = 50\npartition = "account_id"\n',
        '[services.crm]\nmax_wait = "1s"\n',  # meaningless without a bulkhead, but harmless
        '[services.crm]\nmax_in_flight = 4\nrate = "10/s"\ncooldown = false\npaused = true\n',
    ],
)
def test_sensible_flow_control_is_accepted(text: str) -> None:
    parse_policies(text.encode(), source="policies.toml")


def test_the_shipped_flow_control_example_is_valid_once_uncommented() -> None:
    text = (REPO / "policies.toml").read_text()
    start = text.index("# [limits.crm]")
    end = text.index("[pool_alerts]")
    example = "\n".join(
        line[2:] for line in text[start:end].splitlines() if line[:3] not in ("#", "# #")
    )
    p = parse_policies(example.encode(), source="example").policies
    assert (p.limits["crm"].concurrency, p.limits["crm"].burst) == (20, 50)
    assert p.limits["crm"].rate == pytest.approx(5000 / 3600)
    sync, push = p.tasks["crm.sync"], p.tasks["crm.push"]
    assert (sync.concurrency, sync.partition, sync.limits) == (2, "account_id", ("crm",))
    assert (push.rate, push.burst, push.limits) == (10.0, 20, ("crm",))
    shipped = load_policies(REPO / "policies.toml").policies
    assert shipped.limits == {}
    assert shipped.services["example"].cooldown is True


def test_every_key_of_the_model_has_a_row_in_the_readme() -> None:
    text = (REPO / "README.md").read_text()
    models = [
        model.ExecutorPolicy,
        model.DatabasePolicy,
        model.RetryPolicy,
        model.BreakerPolicy,
        model.ServiceBinding,
        model.TaskBinding,
        model.LimitPolicy,
        model.PoolAlertPolicy,
        model.EventLoopPolicy,
        model.SchedulePolicy,
    ]
    missing = [
        f"{cls.__name__}.{field.alias or name}"
        for cls in models
        for name, field in cls.model_fields.items()
        if f"| `{field.alias or name}` |" not in text
    ]
    assert missing == []
