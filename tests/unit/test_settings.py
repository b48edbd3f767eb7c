"""Where settings come from: the env file in use, and the service's defaults beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gladd import light_settings as settings_module
from gladd.errors import SettingsError
from gladd.settings import SERVICE_DEFAULTS, env_file_in_use, load_settings


@pytest.fixture
def service_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for /etc/gladd/gladd.env, found by default (GLADD_ENV_FILE unset)."""
    path = tmp_path / "etc" / "gladd.env"
    path.parent.mkdir()
    path.write_text("# the example, all commented out\n")
    monkeypatch.setattr(settings_module, "SERVICE_ENV_FILE", path)
    monkeypatch.delenv("GLADD_ENV_FILE")
    for name in ("GLADD_POLICIES", "GLADD_STATE_DIR", "GLADD_DATABASE_URL", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_the_env_file_is_the_flag_then_the_variable_then_the_service_s(tmp_path: Path) -> None:
    service = tmp_path / "gladd.env"
    given = tmp_path / "given.env"
    assert env_file_in_use(None, {}, service) is None  # the service's is not there
    service.write_text("")
    assert env_file_in_use(None, {}, service) == service
    assert env_file_in_use(None, {"GLADD_ENV_FILE": str(given)}, service) == given
    assert env_file_in_use(None, {"GLADD_ENV_FILE": ""}, service) is None  # empty: none
    assert env_file_in_use(given, {"GLADD_ENV_FILE": "other"}, service) == given


def test_beside_the_service_s_env_file_the_defaults_are_the_unit_s(service_env: Path) -> None:
    found = load_settings()
    assert found.state_dir == SERVICE_DEFAULTS["state_dir"] == Path("/var/lib/gladd")
    assert found.policies_path == Path("/etc/gladd/policies.toml")
    assert found.store_url == "sqlite:////var/lib/gladd/gladd.db"
    named = load_settings(env_file=service_env)  # `--env-file /etc/gladd/gladd.env`
    assert named.store_url == found.store_url


def test_precedence_flags_then_variables_then_the_env_file_then_the_service_s_defaults(
    service_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service_env.write_text(f"GLADD_STATE_DIR={tmp_path / 'from-file'}\n")
    assert load_settings().state_dir == tmp_path / "from-file"
    monkeypatch.setenv("GLADD_STATE_DIR", str(tmp_path / "from-env"))
    assert load_settings().state_dir == tmp_path / "from-env"
    assert load_settings(state_dir=tmp_path / "flag").state_dir == tmp_path / "flag"
    monkeypatch.setenv("GLADD_DATABASE_URL", "postgresql://gladd@db/gladd")
    assert load_settings().store_url == "postgresql://gladd@db/gladd"


def test_under_systemd_its_state_directory_wins(
    service_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/gladd-moved")  # a drop-in moved it
    assert load_settings().state_dir == Path("/var/lib/gladd-moved")


def test_another_env_file_gets_no_service_defaults(tmp_path: Path) -> None:
    other = tmp_path / "dev.env"
    other.write_text("GLADD_LOG_LEVEL=debug\n")
    found = load_settings(env_file=other)
    assert found.state_dir != SERVICE_DEFAULTS["state_dir"]
    assert found.log_level == "DEBUG"


def test_an_env_file_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=f"{tmp_path / 'nope.env'}: env file not found"):
        load_settings(env_file=tmp_path / "nope.env")


def test_the_service_defaults_are_what_the_unit_sets() -> None:
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "gladd.service").read_text()
    lines = {line.strip() for line in unit.splitlines()}
    assert f"EnvironmentFile=-{settings_module.SERVICE_ENV_FILE}" in lines
    assert f"Environment=GLADD_POLICIES={SERVICE_DEFAULTS['policies']}" in lines
    assert "StateDirectory=gladd" in lines  # /var/lib/ + gladd, systemd.exec(5)
    assert SERVICE_DEFAULTS["state_dir"] == Path("/var/lib/gladd")
