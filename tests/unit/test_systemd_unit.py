import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "gladd.service"
ENV_EXAMPLE = SYSTEMD / "gladd.env.example"
INSTALLED_BINARY = "/usr/local/bin/gladd"
MAX_EXPOSURE = 2.0


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections to keys to values; a key may repeat (e.g. SystemCallFilter=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is required in CI (Debian package: systemd)")
        pytest.skip("systemd-analyze is not installed")
    return path


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)\s*(s|sec|min)?", value)
    assert match, value
    return int(match[1]) * (60 if match[2] == "min" else 1)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStartPre", "/usr/local/bin/gladd check"),
        ("ExecStart", "/usr/local/bin/gladd run"),
        ("ExecReload", "/usr/local/bin/gladd reload"),
        ("WatchdogSec", "30s"),
        ("Restart", "on-failure"),
        ("KillMode", "mixed"),
        ("User", "gladd"),
        ("Group", "gladd"),
        ("StateDirectory", "gladd"),
        ("ConfigurationDirectory", "gladd"),
        ("LogsDirectory", "gladd"),
        ("RuntimeDirectory", "gladd"),
        ("Environment", "GLADD_POLICIES=/etc/gladd/policies.toml"),
        ("EnvironmentFile", "-/etc/gladd/gladd.env"),
    ],
)
def test_service_directive(service: dict[str, list[str]], key: str, expected: str) -> None:
    assert service[key] == [expected]


def test_stop_timeout_leaves_room_for_the_30s_shutdown_grace(
    service: dict[str, list[str]],
) -> None:
    assert seconds(service["TimeoutStopSec"][0]) >= 30 + 10


def test_network_is_not_confined_to_loopback(service: dict[str, list[str]]) -> None:
    assert "PrivateNetwork" not in service
    assert "IPAddressDeny" not in service
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


def test_unit_is_installable() -> None:
    assert parse_unit(UNIT.read_text())["Install"]["WantedBy"] == ["multi-user.target"]


def test_env_example_documents_every_setting_commented_out() -> None:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line.strip()]
    assert all(line.startswith("#") for line in lines)
    examples = {line[1:].partition("=")[0] for line in lines if re.match(r"#GLADD_\w+=", line)}
    assert examples == {
        "GLADD_DATABASE_URL",
        "GLADD_ADMIN_TOKEN",
        "GLADD_LOG_LEVEL",
        "GLADD_LOG_FORMAT",
        "GLADD_LOG_FILE",
    }


def test_security_exposure_is_ok() -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout


def gladd_executable() -> str:
    """A real file for ExecStart=: verify fails on a missing binary, not on its arguments."""
    beside_python = Path(sys.executable).with_name("gladd")
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("gladd") or sys.executable


def test_systemd_analyze_verify_reports_no_problem_with_the_unit(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALLED_BINARY, gladd_executable()))
    result = subprocess.run(
        [analyze, "verify", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    output = result.stdout + result.stderr
    # Unknown keys and unparsable values are only logged ("...: Unknown key..., ignoring"),
    # so lines naming the unit file count as failures too. The gladd user may not exist here.
    problems = [
        line
        for line in output.splitlines()
        if UNIT.name in line and not re.search(r"\buser\b|\bgroup\b", line, re.IGNORECASE)
    ]
    assert result.returncode == 0, output
    assert problems == [], output
