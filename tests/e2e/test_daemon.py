"""The real daemon: start, READY, health, watchdog, graceful stop, and start-up failures."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.e2e.conftest import Gladd, wait_until

pytestmark = pytest.mark.e2e


def test_starts_serves_health_and_stops_cleanly_on_sigterm(gladd: Gladd) -> None:
    ready = gladd.start_ready()
    assert ready["READY"] == "1"
    assert "serving policies generation 1" in ready["STATUS"]

    # READY does not wait for the store to open, nor for the first background checks: on
    # a busy machine health may still say warn ("not opened yet") for a moment.
    seen: list[object] = []

    def passing() -> httpx.Response | None:
        answer = gladd.get("/health")
        seen[:] = [answer.json()]
        return answer if answer.json()["status"] == "pass" else None

    try:
        health = wait_until(passing, timeout=10, what="health passing")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last health: {seen}") from None
    assert health.status_code == 200
    assert health.headers["content-type"] == "application/health+json"
    body = health.json()
    assert body["checks"]["policies:generation"][0]["observedValue"] == 1
    assert gladd.get("/health/live").json()["status"] == "pass"
    assert gladd.get("/health/ready").status_code == 200

    started = time.monotonic()
    code, err = gladd.stop()
    assert code == 0, err
    assert time.monotonic() - started < 30  # the shipped shutdown grace
    assert "SIGTERM received: stopping" in err
    assert "gladd stopped" in err
    assert any(m.get("STOPPING") == "1" for m in gladd.notify.received) or gladd.notify.wait_for(
        "STOPPING"
    )
    assert (gladd.state_dir / "policies.last-good.toml").read_bytes() == gladd.policies.read_bytes()


def test_pings_the_watchdog_at_half_the_interval(gladd: Gladd) -> None:
    gladd.start_ready(WATCHDOG_USEC="200000")
    first = gladd.notify.wait_for("WATCHDOG", timeout=2)
    second = gladd.notify.wait_for("WATCHDOG", timeout=2)
    assert first["WATCHDOG"] == second["WATCHDOG"] == "1"
    code, _ = gladd.stop()
    assert code == 0


def test_sighup_reloads_without_stopping(gladd: Gladd) -> None:
    gladd.start_ready()
    assert gladd.process is not None
    gladd.policies.write_text(
        gladd.policies.read_text().replace("concurrency = 10", "concurrency = 3")
    )
    gladd.process.send_signal(1)
    reloading = gladd.notify.wait_for("RELOADING")
    assert int(reloading["MONOTONIC_USEC"]) > 0
    ready = gladd.notify.wait_for("READY")
    assert "serving policies generation 2" in ready["STATUS"]
    assert gladd.get("/health").json()["checks"]["policies:generation"][0]["observedValue"] == 2
    code, err = gladd.stop()
    assert code == 0
    assert "SIGHUP received" in err
    assert "executor.concurrency 10 → 3" in err


def test_admin_port_in_use_fails_fast_with_a_precise_message(gladd: Gladd) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", gladd.port))
        taken.listen()
        process = gladd.start()
        _, err = process.communicate(timeout=30)
    assert process.returncode == 69
    assert f"gladd: admin address 127.0.0.1:{gladd.port} is already in use" in err
    assert "Traceback" not in err


def test_non_loopback_admin_address_needs_a_token(gladd: Gladd) -> None:
    process = gladd.start("--admin-host", "0.0.0.0")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 69
    assert "without a token: set GLADD_ADMIN_TOKEN" in err
    assert "Traceback" not in err


def test_invalid_policies_stop_the_start_with_located_errors(gladd: Gladd) -> None:
    gladd.policies.write_text("[executor]\nconcurrency = 0\n")
    process = gladd.start()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 78
    assert f"{gladd.policies}:2:15: executor.concurrency: must be ≥ 1 (got 0)" in err
    assert "Traceback" not in err


def test_a_partition_on_a_field_no_payload_has_stops_the_start(gladd: Gladd) -> None:
    gladd.policies.write_text('[tasks."gladd.sleep"]\nrate = "5/s"\npartition = "tenant"\n')
    process = gladd.start()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 78
    assert (
        f'{gladd.policies}:3:13: tasks."gladd.sleep".partition: kind gladd.sleep\'s payload '
        "has no field 'tenant' (its fields: seconds)"
    ) in err
    assert "Traceback" not in err


def test_invalid_settings_name_the_variable(gladd: Gladd) -> None:
    process = gladd.start(GLADD_LOG_LEVEL="loud")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 78
    assert "setting log_level (--log-level / GLADD_LOG_LEVEL)" in err
    assert "Traceback" not in err
