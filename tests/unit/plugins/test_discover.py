"""Discovery from directories and entry points; broken plugins refused, precisely, alone."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gladd.errors import TaskRejected
from gladd.executor.kinds import KindRegistry, builtin_kinds
from gladd.plugins import Plugin, discover_plugins, plugin_kinds, shipped_plugin_dir
from gladd.policies import Policies, parse_policies

GOOD = """
from pydantic import BaseModel
from gladd.plugins import Plugin, TaskKind

class Ping(BaseModel):
    n: int

async def ping(ctx, payload: Ping) -> int:
    return payload.n

plugin = Plugin(
    name="{name}",
    services={services},
    kinds=[TaskKind(name="{name}.ping", handler=ping, payload=Ping)],
)
"""


def policies(text: str = "") -> Policies:
    return parse_policies(text.encode(), source="test").policies


def write(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def good(name: str, services: str = "()") -> str:
    return GOOD.format(name=name, services=services)


def test_shipped_plugins_are_found_and_unconfigured_ones_are_only_inactive() -> None:
    assert (shipped_plugin_dir() / "http.py").is_file()
    found = discover_plugins(policies(), entry_points=False, environ={})
    assert [p.name for p in found.plugins] == ["http"]
    inactive = {p.plugin: p for p in found.problems}
    assert set(inactive) == {"cloudinary", "github", "huggingface"}
    assert all(p.inactive for p in inactive.values())
    assert "no [services.github]" in inactive["github"].message


def test_directory_plugins_load_and_a_broken_one_is_refused_alone(tmp_path: Path) -> None:
    write(tmp_path, "alpha", good("alpha"))
    write(tmp_path, "broken", "import nonexistent_module_xyz\n")
    write(tmp_path, "syntax", "def oops(:\n")
    write(tmp_path, "empty", "x = 1\n")
    write(tmp_path, "_private", "raise SystemExit(1)\n")
    found = discover_plugins(policies(), [tmp_path], shipped=False, entry_points=False)
    assert [p.name for p in found.plugins] == ["alpha"]
    assert found.plugins[0].source == str(tmp_path / "alpha.py")
    messages = {Path(p.source).name: p.message for p in found.problems}
    assert set(messages) == {"broken.py", "syntax.py", "empty.py"}
    assert messages["broken.py"].startswith(
        "import failed: ModuleNotFoundError: No module named 'nonexistent_module_xyz' (line 1 of"
    )
    assert messages["syntax.py"].startswith("import failed: SyntaxError:")
    assert "expected `plugin = gladd.plugins.Plugin(...)`, found nothing" in messages["empty.py"]


def test_a_missing_plugin_directory_is_reported(tmp_path: Path) -> None:
    found = discover_plugins(policies(), [tmp_path / "nope"], shipped=False, entry_points=False)
    assert found.problems[0].message.startswith("plugin directory not found")


def test_entry_points_are_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "gladd_beta_plugin", good("beta"))
    info = tmp_path / "gladd_beta-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gladd-beta\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[gladd.plugins]\nbeta = gladd_beta_plugin:plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover_plugins(policies(), shipped=False, environ={})
    beta = [p for p in found.plugins if p.name == "beta"]
    assert beta, found.problems
    assert beta[0].source == (
        "entry point beta = gladd_beta_plugin:plugin (distribution gladd-beta)"
    )


def test_names_kinds_and_services_are_validated(tmp_path: Path) -> None:
    write(tmp_path / "a", "one", good("dup"))
    write(tmp_path / "b", "two", good("dup"))
    write(tmp_path / "a", "three", good("gladd"))
    write(tmp_path / "a", "four", good("svc", '("github",)'))
    write(
        tmp_path / "a",
        "five",
        """
        from gladd.plugins import Plugin, TaskKind
        async def h(ctx, payload): ...
        plugin = Plugin(name="five", kinds=[TaskKind(name="other.verb", handler=h)])
        """,
    )
    p = policies("[plugins.svc]\n")
    found = discover_plugins(p, [tmp_path / "a", tmp_path / "b"], shipped=False, entry_points=False)
    assert [x.name for x in found.plugins] == ["dup"]
    messages = {Path(x.source).name: x.message for x in found.problems}
    assert "is already taken by" in messages["two.py"]
    assert "reserved for gladd" in messages["three.py"]
    assert messages["four.py"].startswith(
        "services.github: plugin svc calls service github, but policies.toml defines no "
        "[services.github]"
    )
    assert "must be namespaced as 'five.verb'" in messages["five.py"]


def test_settings_are_validated_with_key_paths_and_secrets_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    base = '[services.github]\n[plugins.github]\nbase_url = "ftp://x"\n'
    found = discover_plugins(
        policies(base + f'token_file = "{secret}"\n'), entry_points=False, environ={}
    )
    (problem,) = [p for p in found.problems if p.plugin == "github"]
    assert (
        problem.message
        == "plugins.github.base_url: Value error, must be an http:// or https:// URL"
    )
    found = discover_plugins(
        policies('[services.github]\n[plugins.github]\ntoken_env = "NOPE"\n'),
        entry_points=False,
        environ={},
    )
    (problem,) = [p for p in found.problems if p.plugin == "github"]
    assert problem.message == "plugins.github.token_env: environment variable NOPE is not set"
    found = discover_plugins(
        policies(f'[services.github]\n[plugins.github]\ntoken_file = "{secret}"\n'),
        entry_points=False,
        environ={},
    )
    settings = found.settings["github"]
    assert settings.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings)


def test_payloads_are_validated_at_enqueue() -> None:
    found = discover_plugins(policies(), entry_points=False, environ={})
    kinds = KindRegistry([*builtin_kinds(), *plugin_kinds(found.plugins)])
    with pytest.raises(
        TaskRejected, match=r"payload for http.request is invalid: url: Field required"
    ):
        kinds.require("http.request").parse({"method": "GET"})
    with pytest.raises(TaskRejected, match=r"method: Input should be 'GET'"):
        kinds.require("http.request").parse({"method": "FETCH", "url": "http://x"})


def test_plugin_declarations_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="plugin name 'Bad Name' must be lower case"):
        Plugin(name="Bad Name", kinds=[])
    with pytest.raises(TypeError, match="services must be a tuple of names, not a str"):
        Plugin(name="x", services="github", kinds=[])  # type: ignore[arg-type]
