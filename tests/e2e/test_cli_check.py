"""``gladd check`` as ``ExecStartPre=`` runs it: a broken or misconfigured plugin fails the
deployment unless ``--allow-broken-plugins``; ``--json`` gives the same verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import run_cli

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
VALID = "schema_version = 1\n\n[executor]\nconcurrency = 4\n"


@pytest.fixture
def broken_plugins(tmp_path: Path) -> dict[str, str]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "mailer.py").write_text("import no_such_module_for_gladd\n")
    return {"GLADD_PLUGIN_PATHS": str(plugins)}


def check(*args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    done = run_cli("check", *args, "--json", env=env)
    return done.returncode, json.loads(done.stdout), done.stderr


def test_a_plugin_that_fails_to_import_fails_the_check(
    tmp_path: Path, broken_plugins: dict[str, str]
) -> None:
    policies = tmp_path / "policies.toml"
    policies.write_text(VALID)
    source = Path(broken_plugins["GLADD_PLUGIN_PATHS"]) / "mailer.py"

    strict = run_cli("check", str(policies), env=broken_plugins)
    assert strict.returncode == 78
    assert strict.stdout.splitlines()[0] == f"{policies}: policies OK, plugins not"
    assert (
        f"gladd: {source}: import failed: ModuleNotFoundError: No module named "
        f"'no_such_module_for_gladd' (line 1 of {source})"
    ) in strict.stderr.splitlines()

    relaxed = run_cli("check", str(policies), "--allow-broken-plugins", env=broken_plugins)
    assert relaxed.returncode == 0
    assert relaxed.stdout.splitlines()[0] == (
        f"{policies}: policies OK, plugins not (allowed by --allow-broken-plugins)"
    )
    assert "import failed" in relaxed.stderr, "still listed"


def test_a_settings_table_of_no_plugin_fails_the_check(tmp_path: Path) -> None:
    policies = tmp_path / "policies.toml"
    policies.write_text(VALID + '\n[plugins.mailer]\nfrom = "ops@example.com"\n')
    done = run_cli("check", str(policies))
    assert done.returncode == 78
    assert "gladd: policies: plugins.mailer: no plugin named mailer is loaded" in done.stderr
    assert run_cli("check", str(policies), "--allow-broken-plugins").returncode == 0


def test_json_verdicts_carry_the_exit_code_and_each_located_problem(
    tmp_path: Path, broken_plugins: dict[str, str]
) -> None:
    policies = tmp_path / "policies.toml"
    policies.write_text(VALID)
    code, verdict, stderr = check(str(policies))
    assert (code, stderr) == (0, "")
    assert verdict["ok"] is True
    assert verdict["exit_code"] == 0
    assert verdict["path"] == str(policies)
    assert verdict["policies"]["ok"] is True
    assert len(verdict["policies"]["sha256"]) == 64
    assert verdict["plugins"]["ok"] is True
    assert verdict["plugins"]["loaded"] == ["http (http.request)"]
    assert verdict["plugins"]["errors"] == []
    assert verdict["settings"] == {"ok": True, "error": None}

    code, verdict, _ = check(str(policies), env=broken_plugins)
    assert (code, verdict["ok"], verdict["exit_code"]) == (78, False, 78)
    assert verdict["policies"]["ok"] is True
    [error] = verdict["plugins"]["errors"]
    assert error["source"] == broken_plugins["GLADD_PLUGIN_PATHS"] + "/mailer.py"
    assert error["message"].startswith("import failed: ModuleNotFoundError")
    code, verdict, _ = check(str(policies), "--allow-broken-plugins", env=broken_plugins)
    assert (code, verdict["ok"], verdict["exit_code"], verdict["plugins"]["ok"]) == (
        0,
        True,
        0,
        False,
    )

    policies.write_text("schema_version = 1\n\n[executor]\nconcurrency = 0\n")
    code, verdict, _ = check(str(policies))
    assert (code, verdict["ok"], verdict["exit_code"], verdict["plugins"]) == (78, False, 78, None)
    assert verdict["policies"]["errors"] == [
        {
            "file": str(policies),
            "line": 4,
            "column": 15,
            "key": "executor.concurrency",
            "message": "must be ≥ 1 (got 0)",
            "text": f"{policies}:4:15: executor.concurrency: must be ≥ 1 (got 0)",
        }
    ]


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"GLADD_ADMIN_PORT": "banana"},
            "setting admin_port (--admin-port / GLADD_ADMIN_PORT): Input should be a valid "
            "integer, unable to parse string as an integer (got 'banana')",
        ),
        (
            {"GLADD_OTEL": "true", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL='grpc': gladd exports OTLP over HTTP only",
        ),
    ],
)
def test_json_says_when_the_settings_themselves_are_wrong(
    tmp_path: Path, env: dict[str, str], error: str
) -> None:
    policies = tmp_path / "policies.toml"
    policies.write_text(VALID)
    code, verdict, stderr = check(str(policies), env=env)
    assert (code, stderr) == (78, "")
    assert verdict["ok"] is False
    assert verdict["exit_code"] == 78
    assert verdict["path"] == str(policies)
    assert verdict["settings"]["ok"] is False
    assert verdict["settings"]["error"].startswith(error)
    assert (verdict["policies"], verdict["plugins"]) == (None, None)
    plain = run_cli("check", str(policies), env=env)
    assert plain.returncode == 78
    assert error in plain.stderr
