"""The fast commands' settings agree with :func:`load_settings`, or defer to it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gladd import light_settings
from gladd.cli.flags import light_of
from gladd.errors import SettingsError
from gladd.light_settings import resolve, store_digest
from gladd.settings import load_settings

NAMES = ("POLICIES", "DATABASE_URL", "STATE_DIR", "ADMIN_HOST", "ADMIN_PORT", "ADMIN_TOKEN")
OTHERS = (
    "LOG_LEVEL",
    "LOG_FORMAT",
    "LOG_RETENTION",
    "OTEL",
    "LOG_FILE",
    "PLUGIN_PATHS",
    "ADMIN_READ_ONLY",
)
TEXTS = {
    "POLICIES": st.sampled_from(["p.toml", "/etc/x/policies.toml", ""]),
    "DATABASE_URL": st.sampled_from(["sqlite:///tmp/a.db", "postgresql://u:pw@h/db", ""]),
    "STATE_DIR": st.sampled_from(["/var/tmp/s", "rel/dir", ""]),
    "ADMIN_HOST": st.sampled_from(["127.0.0.1", "::1", "0.0.0.0", ""]),
    "ADMIN_PORT": st.sampled_from(["8001", "0", "65535", "65536", "-1", "x", "08000", " 9", ""]),
    "ADMIN_TOKEN": st.sampled_from(["s3cret", "", "a b"]),
    "LOG_LEVEL": st.sampled_from(["info", "DEBUG", "loud", ""]),
    "LOG_FORMAT": st.sampled_from(["text", "json", "xml"]),
    "LOG_RETENTION": st.sampled_from(["3", "-2", "many"]),
    "OTEL": st.sampled_from(["0", "false", "no", "1", "maybe", "On"]),
    "LOG_FILE": st.sampled_from(["/tmp/g.log", ""]),
    "PLUGIN_PATHS": st.sampled_from(["a:b", ""]),
    "ADMIN_READ_ONLY": st.sampled_from(["1", "true", "off", "No", "sometimes"]),
}
ALL = NAMES + OTHERS


def _key(name: str, lower: bool) -> str:
    return f"gladd_{name.lower()}" if lower else f"GLADD_{name}"


entries = st.dictionaries(st.sampled_from(ALL), st.none(), max_size=5).flatmap(
    lambda chosen: st.fixed_dictionaries({name: TEXTS[name] for name in chosen})
)
flags = st.fixed_dictionaries(
    {},
    optional={
        "policies": st.sampled_from([Path("f.toml"), Path("/abs/f.toml")]),
        "database_url": st.sampled_from(["sqlite:///tmp/flag.db", ""]),
        "state_dir": st.sampled_from([Path("/flag/state"), Path("flag")]),
        "admin_host": st.sampled_from(["localhost", "10.0.0.1"]),
        "admin_port": st.sampled_from([9000, 70000, -5]),
        "log_level": st.sampled_from(["warning", "nope"]),
        "log_format": st.sampled_from(["json"]),
    },
)
# How the env file spells its lines (python-dotenv reads them, for pydantic as here).
STYLES = (
    "GLADD_{k}={v}",
    "export GLADD_{k}={v}",
    'GLADD_{k}="{v}"',
    "gladd_{k}={v}  # note",
    "{k}={v}",
)
# Where the env file comes from: none, --env-file, GLADD_ENV_FILE, the service's default.
where = st.sampled_from(["none", "flag", "variable", "service", "missing"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variables=entries,
    lower=st.booleans(),
    file_entries=entries,
    given_flags=flags,
    env_file_from=where,
    state_directory=st.sampled_from([None, "/run/sd/state:/other"]),
    style=st.sampled_from(STYLES),
)
def test_light_settings_are_load_settings_or_none(
    tmp_path_factory: pytest.TempPathFactory,
    variables: dict[str, str],
    lower: bool,
    file_entries: dict[str, str],
    given_flags: dict[str, Any],
    env_file_from: str,
    state_directory: str | None,
    style: str,
) -> None:
    base = tmp_path_factory.mktemp("light")
    env_file = base / "gladd.env"
    env_file.write_text("".join(style.format(k=k, v=v) + "\n" for k, v in file_entries.items()))
    environ = {"HOME": str(base / "home"), "PATH": os.environ.get("PATH", "")}
    environ |= {_key(k, lower): v for k, v in variables.items()}
    if state_directory is not None:
        environ["STATE_DIRECTORY"] = state_directory
    flag_env_file = None
    if env_file_from == "flag":
        flag_env_file = env_file
    elif env_file_from == "variable":
        environ["GLADD_ENV_FILE"] = str(env_file)
    elif env_file_from == "missing":
        flag_env_file = base / "not-there.env"
    service = env_file if env_file_from == "service" else base / "no-service.env"
    with (
        mock.patch.dict(os.environ, environ, clear=True),
        mock.patch.object(light_settings, "SERVICE_ENV_FILE", service),
    ):
        light = resolve(given_flags, flag_env_file)
        try:
            full = load_settings(env_file=flag_env_file, **given_flags)
        except SettingsError:
            event("refused")
            assert light is None  # the full settings' message is the one shown
            return
        if light is None:
            # Deferring is allowed only for what is odd; plain values resolve here.
            assert _odd(variables, file_entries, env_file_from)
            return
        event("resolved")
        assert light == light_of(full)
        assert light.store_url == full.store_url
        assert light.policies_path == full.policies_path


def _odd(variables: dict[str, str], file_entries: dict[str, str], env_file_from: str) -> bool:
    """Whether anything given is what the light resolver leaves to pydantic."""
    odd = {"POLICIES": {""}, "STATE_DIR": {""}, "LOG_FILE": {""}, "LOG_LEVEL": {""}}
    odd |= {"ADMIN_PORT": {"08000", " 9"}}
    read = [variables]
    if env_file_from in ("flag", "variable", "service"):
        read.append(file_entries)
    return any(v in odd.get(k, set()) for given in read for k, v in given.items())


def test_plain_settings_resolve_without_pydantic(tmp_path: Path) -> None:
    env_file = tmp_path / "gladd.env"
    env_file.write_text("GLADD_ADMIN_PORT=8123\nGLADD_STATE_DIR=/srv/gladd\n")
    environ = {"GLADD_ADMIN_TOKEN": "t0ken", "HOME": str(tmp_path)}
    light = resolve({"admin_host": "::1"}, env_file, environ)
    assert light is not None
    assert (light.admin_host, light.admin_port, light.admin_token) == ("::1", 8123, "t0ken")
    assert light.store_url == "sqlite:////srv/gladd/gladd.db"


def test_a_relative_sqlite_store_is_named_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    in_a = store_digest("sqlite:///state/gladd.db")
    assert in_a == store_digest(f"sqlite:///{tmp_path / 'a' / 'state' / 'gladd.db'}")
    monkeypatch.chdir(tmp_path / "b")
    assert store_digest("sqlite:///state/gladd.db") != in_a
    assert store_digest("postgresql://u:pw@h/db") != store_digest("postgresql://u:pw@h/other")
