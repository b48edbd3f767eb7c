"""``gladd check``'s verdict cache, in real processes: the same inputs print the same
verdict, byte for byte, without the full check; any input that changes is noticed.

Each run goes through :func:`gladd.cli.check.run_check` as the command tree calls it (a
parser with :func:`~gladd.cli.tree.add_check_command`'s flags), and reports which modules
it imported: ``gladd.cli.check_verdict`` among them means a full check ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli

pytestmark = pytest.mark.e2e

ENTRY = """\
import argparse, json, os, sys
from gladd.cli.tree import add_check_command
parser = argparse.ArgumentParser(prog="gladd")
add_check_command(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
code = args.handler(args)
with open(os.environ["MODULES_OUT"], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(code)
"""
VALID = """\
schema_version = 1

[executor]
concurrency = 4

[services.mail]
hosts = ["mail.invalid"]
"""
HEAVY = ("gladd.policies", "gladd.settings", "gladd.plugins", "pydantic", "httpx", "loguru")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    modules: frozenset[str]

    @property
    def full(self) -> bool:
        """A full check ran (the cache had no verdict that still held)."""
        return "gladd.cli.check_verdict" in self.modules

    @property
    def printed(self) -> tuple[int, str, str]:
        return self.code, self.out, self.err


@dataclass
class Checker:
    tmp: Path
    env: dict[str, str]

    def __call__(self, *args: str, **env: str) -> Run:
        modules = self.tmp / "modules.json"
        done = subprocess.run(
            [sys.executable, "-c", ENTRY, "check", *args],
            check=False,
            cwd=self.tmp,
            env={**self.env, **env, "MODULES_OUT": str(modules)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return Run(
            done.returncode, done.stdout, done.stderr, frozenset(json.loads(modules.read_text()))
        )


@pytest.fixture
def check(tmp_path: Path) -> Checker:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    env.update(GLADD_ENV_FILE="", XDG_CACHE_HOME=str(tmp_path / "cache"))
    return Checker(tmp_path, env)


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    """A plugin directory with one plugin, ``mail``, reading its token from a variable."""
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "mail.py").write_text(MAIL_PLUGIN)
    return directory


MAIL_PLUGIN = """\
from mailkinds import VERB
from pydantic import BaseModel, SecretStr

from gladd.plugins import Plugin, TaskKind


class Settings(BaseModel):
    token: SecretStr


async def send(ctx, payload):
    return None


plugin = Plugin(
    name="mail",
    services=("mail",),
    settings=Settings,
    kinds=(TaskKind(name=VERB, handler=send),),
)
"""


def with_mail(policies: Path, plugins: Path) -> dict[str, str]:
    """Policies enabling ``mail``, and its environment: its token, and where the module it
    imports its kind's name from is (``lib/mailkinds.py``)."""
    policies.write_text(VALID + '\n[plugins.mail]\ntoken_env = "MAIL_TOKEN"\n')
    lib = policies.parent / "lib"
    lib.mkdir()
    (lib / "mailkinds.py").write_text('VERB = "mail.send"\n')
    return {"GLADD_PLUGIN_PATHS": str(plugins), "MAIL_TOKEN": "s3cret", "PYTHONPATH": str(lib)}


CASES = {
    "valid": (VALID, ()),
    "valid, json": (VALID, ("--json",)),
    "invalid policies": (VALID.replace("= 4", "= 0"), ()),
    "invalid policies, json": (VALID.replace("= 4", "= 0"), ("--json",)),
    "a broken plugin, allowed": (VALID, ("--allow-broken-plugins",)),
    "a broken plugin, allowed, json": (VALID, ("--allow-broken-plugins", "--json")),
    "a broken plugin": (VALID, ()),
}


@pytest.mark.parametrize("case", CASES)
def test_a_second_check_prints_the_first_ones_verdict_from_the_cache(
    check: Checker, tmp_path: Path, plugins: Path, case: str
) -> None:
    text, flags = CASES[case]
    policies = tmp_path / "policies.toml"
    policies.write_text(text)
    env = {}
    if "broken" in case:
        (plugins / "mail.py").write_text("import no_such_module_for_gladd\n")
        env["GLADD_PLUGIN_PATHS"] = str(plugins)
    first = check(str(policies), *flags, **env)
    assert first.full
    again = check(str(policies), *flags, **env)
    assert not again.full
    assert again.printed == first.printed
    if "invalid" in case:
        assert first.code == 78
        located = f"{policies}:4:15: executor.concurrency: must be "
        assert located in (
            json.loads(first.out)["policies"]["errors"][0]["text"] if "json" in case else first.err
        )
    elif "broken" in case:
        assert first.code == (0 if "allowed" in case else 78)
        assert "import failed: ModuleNotFoundError" in first.out + first.err
    else:
        assert first.code == 0


def test_a_cache_hit_imports_neither_the_policies_nor_the_settings_model_nor_a_plugin(
    check: Checker, tmp_path: Path, plugins: Path
) -> None:
    env = with_mail(tmp_path / "policies.toml", plugins)
    first = check(str(tmp_path / "policies.toml"), **env)
    assert (first.code, first.full) == (0, True)
    assert "mail (mail.send)" in first.out
    assert "gladd_plugin_mail" in first.modules
    hit = check(str(tmp_path / "policies.toml"), **env)
    assert hit.printed == first.printed
    heavy = {m for m in hit.modules if m.startswith(HEAVY) or m.startswith("gladd_plugin_")}
    assert heavy == set()


def test_the_gladd_command_prints_the_same_verdict_twice(tmp_path: Path) -> None:
    policies = tmp_path / "policies.toml"
    policies.write_text(VALID.replace("= 4", "= 0"))
    first = run_cli("check", str(policies))
    again = run_cli("check", str(policies))
    assert first.returncode == again.returncode == 78
    assert (again.stdout, again.stderr) == (first.stdout, first.stderr)
    assert [
        p.suffix for p in (Path(os.environ["XDG_CACHE_HOME"]) / "gladd" / "check").iterdir()
    ] == [".json"]


Edit = Callable[[Path, Path, dict[str, str]], tuple[dict[str, str], str]]


def edit_policies(tmp: Path, plugins: Path, env: dict[str, str]) -> tuple[dict[str, str], str]:
    policies = tmp / "policies.toml"
    policies.write_text(policies.read_text().replace("concurrency = 4", "concurrency = 5"))
    return env, "executor:       concurrency 5"


def change_a_plugin(tmp: Path, plugins: Path, env: dict[str, str]) -> tuple[dict[str, str], str]:
    plugin = plugins / "mail.py"
    plugin.write_text(plugin.read_text().replace("name=VERB", 'name="mail.post"'))
    return env, "mail (mail.post)"


def add_a_plugin(tmp: Path, plugins: Path, env: dict[str, str]) -> tuple[dict[str, str], str]:
    (plugins / "fax.py").write_text("raise RuntimeError('no fax today')\n")
    return env, "import failed: RuntimeError: no fax today"


def change_a_module_a_plugin_imports(
    tmp: Path, plugins: Path, env: dict[str, str]
) -> tuple[dict[str, str], str]:
    (tmp / "lib" / "mailkinds.py").write_text('VERB = "mail.queue"\n')
    return env, "mail (mail.queue)"


def change_the_plugin_paths(
    tmp: Path, plugins: Path, env: dict[str, str]
) -> tuple[dict[str, str], str]:
    return {**env, "GLADD_PLUGIN_PATHS": str(tmp / "elsewhere")}, "plugin directory not found"


def change_the_variable_a_plugin_reads(
    tmp: Path, plugins: Path, env: dict[str, str]
) -> tuple[dict[str, str], str]:
    del env["MAIL_TOKEN"]
    return env, "plugins.mail.token_env: environment variable MAIL_TOKEN is not set"


def change_the_env_file(
    tmp: Path, plugins: Path, env: dict[str, str]
) -> tuple[dict[str, str], str]:
    (tmp / "gladd.env").write_text("GLADD_ADMIN_PORT=banana\n")
    return env, "setting admin_port"


EDITS: dict[str, Edit] = {
    "the policies file": edit_policies,
    "a plugin file": change_a_plugin,
    "a new plugin file": add_a_plugin,
    "a module a plugin imports": change_a_module_a_plugin_imports,
    "GLADD_PLUGIN_PATHS": change_the_plugin_paths,
    "a variable a plugin reads": change_the_variable_a_plugin_reads,
    "the env file": change_the_env_file,
}


@pytest.mark.parametrize("what", EDITS)
def test_a_change_to_any_input_is_checked_in_full(
    check: Checker, tmp_path: Path, plugins: Path, what: str
) -> None:
    policies = tmp_path / "policies.toml"
    env = with_mail(policies, plugins)
    (tmp_path / "gladd.env").write_text("GLADD_LOG_LEVEL=debug\n")
    env["GLADD_ENV_FILE"] = str(tmp_path / "gladd.env")
    before = check(str(policies), **env)
    assert (before.code, before.full) == (0, True), before.err
    assert not check(str(policies), **env).full
    env, shown = EDITS[what](tmp_path, plugins, dict(env))
    after = check(str(policies), **env)
    assert after.full
    assert shown in after.out + after.err
    assert not check(str(policies), **env).full, "and the new verdict is kept"


def test_a_touched_plugin_keeps_its_verdict(check: Checker, tmp_path: Path, plugins: Path) -> None:
    """The cache follows contents: a file saved unchanged changes nothing a check says."""
    env = with_mail(tmp_path / "policies.toml", plugins)
    first = check(**env)
    assert first.full
    os.utime(plugins / "mail.py", ns=(10**18, 10**18))
    again = check(**env)
    assert (again.full, again.printed) == (False, first.printed)


def test_a_policies_file_appearing_in_the_working_directory_is_noticed(
    check: Checker, tmp_path: Path
) -> None:
    shipped = check()
    assert shipped.full
    assert shipped.out.startswith(str(Path(__file__).resolve().parents[2] / "policies.toml"))
    assert not check().full
    (tmp_path / "policies.toml").write_text(VALID)
    local = check()
    assert local.full
    assert local.out.startswith("policies.toml: OK")


SCHEDULED = VALID + '\n[schedules.tick]\nevery = "1h"\nkind = "gladd.noop"\n'


def test_a_cached_verdict_expires_at_the_first_fire_time_it_shows(
    check: Checker, tmp_path: Path
) -> None:
    policies = tmp_path / "policies.toml"
    policies.write_text(SCHEDULED)
    first = check(str(policies), "--json")
    [entry] = (tmp_path / "cache" / "gladd" / "check").glob("*.json")
    stored = json.loads(entry.read_text())
    [tick] = json.loads(first.out)["schedules"]["schedules"]
    assert stored["expires"] == datetime.fromisoformat(tick["next"][0]).timestamp()
    assert not check(str(policies), "--json").full
    # The clock passes the first time shown: the entry must not be printed again.
    entry.write_text(json.dumps({**stored, "expires": stored["expires"] - 3600 * 24 * 365}))
    later = check(str(policies), "--json")
    assert later.full


def test_a_cache_that_cannot_be_written_changes_nothing_but_speed(
    check: Checker, tmp_path: Path
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    env = {"XDG_CACHE_HOME": str(tmp_path / "not-a-dir")}
    policies = tmp_path / "policies.toml"
    policies.write_text(VALID)
    first = check(str(policies), **env)
    again = check(str(policies), **env)
    assert first.full
    assert again.full
    assert again.printed == first.printed == check(str(policies)).printed


def test_an_unreadable_entry_is_replaced_by_a_full_check(check: Checker, tmp_path: Path) -> None:
    policies = tmp_path / "policies.toml"
    policies.write_text(VALID)
    first = check(str(policies))
    [entry] = (tmp_path / "cache" / "gladd" / "check").glob("*.json")
    entry.write_text('{"format": 1, "key": ')
    again = check(str(policies))
    assert (again.full, again.printed) == (True, first.printed)
    assert not check(str(policies)).full


def test_no_cache_checks_in_full_and_keeps_nothing(check: Checker, tmp_path: Path) -> None:
    policies = tmp_path / "policies.toml"
    policies.write_text(VALID)
    assert check(str(policies), "--no-cache").full
    assert not (tmp_path / "cache").exists()
    cached = check(str(policies))
    assert cached.full
    assert not check(str(policies)).full
    forced = check(str(policies), "--no-cache")
    assert (forced.full, forced.printed) == (True, cached.printed)


def sparse(mib: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with path.open("ab") as f:
            f.truncate(mib * 1024 * 1024)

    return make


NOT_POLICIES: dict[str, Callable[[Path], None]] = {
    "fifo": os.mkfifo,
    "directory": Path.mkdir,
    "huge": sparse(60),
}


@pytest.mark.parametrize("kind", NOT_POLICIES)
def test_what_is_not_a_policies_file_is_never_waited_on_nor_read_whole(
    check: Checker, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "policies.toml"
    NOT_POLICIES[kind](path)
    first = check(str(path))
    assert first.code == 78
    assert "not a regular file" in first.err or "over the 4 MiB limit" in first.err
    again = check(str(path))
    assert (again.full, again.printed) == (False, first.printed)
    if kind == "huge":
        sparse(61)(path)
        assert check(str(path)).full, "a large file is followed by its size"


def test_an_env_file_that_is_a_fifo_is_refused_promptly(check: Checker, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "gladd.env")
    (tmp_path / "policies.toml").write_text(VALID)
    done = check("policies.toml", GLADD_ENV_FILE=str(tmp_path / "gladd.env"))
    assert (done.code, done.full) == (78, True)
    assert "env file not found" in done.err
