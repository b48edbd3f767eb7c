"""gladd.tracing's switch and its configuration: off costs nothing, and every way of
setting up OpenTelemetry that gladd cannot honour is refused with what to change."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from gladd import tracing
from gladd.errors import SettingsError

OFF_RUN = """
import sys
from pathlib import Path

import anyio

import gladd.cli, gladd.client, gladd.daemon
from gladd.policies import load_policies
from gladd.runtime import Runtime
from gladd.settings import Settings, shipped_policies
from gladd.store.memory import MemoryStore


async def main() -> None:
    store = MemoryStore()
    policies = load_policies(shipped_policies()).policies
    rt = Runtime(Settings(state_dir=Path(sys.argv[1])), policies, store=store, entry_points=False)
    rt.load_plugins(())
    await store.open()
    rt.store_health.open()
    async with anyio.create_task_group() as tg:
        await tg.start(rt.executor.run)
        enqueued = await rt.tasks.enqueue("gladd.sleep", {"seconds": 0})
        while (await store.get(enqueued.id)).state.value != "succeeded":
            await anyio.sleep(0.01)
        rt.executor.stop()


anyio.run(main)
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
print("ran without OpenTelemetry")
"""


def test_off_a_task_runs_without_importing_opentelemetry(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", OFF_RUN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "GLADD_ENV_FILE": ""},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran without OpenTelemetry"


def test_off_is_the_default() -> None:
    assert tracing.current() is None


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, None),
        ({"OTEL_TRACES_EXPORTER": "none"}, None),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL='grpc': gladd exports OTLP over HTTP only; set it "
            "to http/protobuf and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's "
            "OTLP/HTTP port (4318 by default)",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json': gladd exports OTLP over HTTP only",
        ),
        # The traces-specific variable wins over the general one, either way.
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            None,
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp,zipkin"},
            "OTEL_TRACES_EXPORTER='otlp,zipkin': unknown exporter 'zipkin'; gladd exports "
            "with otlp (OTLP over HTTP), console or none",
        ),
    ],
)
def test_exporter_settings_gladd_cannot_honour_are_named(
    environ: dict[str, str], problem: str | None
) -> None:
    found = tracing.exporter_problem(environ)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(problem)


def test_a_missing_extra_is_named_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def without_sdk(name: str, *args: object) -> object:
        if name.startswith("opentelemetry.sdk"):
            return None
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", without_sdk)
    assert tracing.setup_problem({}) == tracing.EXTRA_MISSING
    assert "pip install 'gladd[otel]'" in tracing.EXTRA_MISSING
    # Every import of the SDK now fails, even of a module an earlier test loaded.
    for name in [m for m in sys.modules if m.startswith("opentelemetry.sdk")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    with pytest.raises(SettingsError, match=r"pip install 'gladd\[otel\]'"):
        tracing.install(node="n", environ={})
    assert tracing.current() is None


def test_setup_is_fine_with_the_extra_installed() -> None:
    assert tracing.setup_problem({}) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.example.test/v1/orders", "https://api.example.test/v1/orders"),
        ("http://127.0.0.1:8080/a?token=s3cret&x=1", "http://127.0.0.1:8080/a?REDACTED"),
        ("https://user:pw@host.test/p", "https://REDACTED:REDACTED@host.test/p"),
    ],
)
def test_urls_on_spans_carry_no_credentials_or_query_values(url: str, shown: str) -> None:
    assert tracing._redacted(url) == shown


def test_the_start_up_line_says_where_spans_go() -> None:
    assert tracing.describe_exporter({}) == (
        "OTLP/HTTP to http://localhost:4318/v1/traces (sampler parentbased_always_on)"
    )
    assert (
        tracing.describe_exporter(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_EXPORTER": "otlp,console",
            }
        )
        == "OTLP/HTTP to http://collector:4318/v1/traces, console (sampler traceidratio)"
    )
    assert tracing.describe_exporter(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/traces"}
    ).startswith("OTLP/HTTP to http://c:4318/traces ")
