import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "gladd.service"
ENV_EXAMPLE = SYSTEMD / "gladd.env.example"
INSTALLED_BINARY = "/opt/gladd/bin/gladd"
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
        ("ExecStartPre", "/opt/gladd/bin/gladd check"),
        ("ExecStart", "/opt/gladd/bin/gladd run"),
        ("ExecReload", "/opt/gladd/bin/gladd reload"),
        ("WatchdogSec", "30s"),
        ("Restart", "on-failure"),
        ("KillMode", "mixed"),
        ("User", "gladd"),
        ("Group", "gladd"),
        ("StateDirectory", "gladd"),
        ("StateDirectoryMode", "0750"),
        ("ConfigurationDirectory", "gladd"),
        ("ConfigurationDirectoryMode", "0750"),
        ("LogsDirectory", "gladd"),
        ("LogsDirectoryMode", "0750"),
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
        "GLADD_ADMIN_READ_ONLY",
        "GLADD_LOG_LEVEL",
        "GLADD_LOG_FORMAT",
        "GLADD_LOG_FILE",
        "GLADD_OTEL",
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


# The README's service recipe and this unit are one installation: the tests below read the
# recipe's commands from README.md (the blocks CI runs) and fail when the two drift apart.


def readme_block(marker: str) -> str:
    """The ```sh block after `<!-- marker -->`, as .ci/service-install extracts it."""
    text = README.read_text()
    _, found, after = text.partition(f"<!-- {marker} -->\n")
    assert found, f"README.md has no <!-- {marker} --> block"
    match = re.match(r"```sh\n(.*?)^```$", after, re.DOTALL | re.MULTILINE)
    assert match, f"<!-- {marker} --> is not followed by a ```sh block"
    return match[1]


def recipe_commands(block: str) -> list[list[str]]:
    """Each simple command's argv, `sudo` dropped: `a || sudo b` is two commands."""
    commands: list[list[str]] = []
    for line in block.splitlines():
        argv: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word in {"&&", "||", ";", "|"}:
                if argv:
                    commands.append(argv[1:] if argv[0] == "sudo" else argv)
                argv = []
            else:
                argv.append(word)
    return commands


@dataclass(frozen=True, slots=True, kw_only=True)
class Placed:
    """What one `install` operand becomes: a path with its owner, group and mode."""

    path: str
    owner: str
    group: str
    mode: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    venv: str
    pip_argv: list[str]
    user: str
    useradd_argv: list[str]
    files: dict[str, Placed]  # by source, relative to the checkout
    directories: dict[str, Placed]  # by path


def install_placements(argv: list[str]) -> tuple[bool, list[str], Placed]:
    """`install [-d] [-o O] [-g G] [-m M] operands...` (only the forms the recipe uses)."""
    options = {"-o": "root", "-g": "root", "-m": "0755"}
    directory, operands = False, []
    words = iter(argv[1:])
    for word in words:
        if word == "-d":
            directory = True
        elif word in options:
            options[word] = next(words)
        else:
            assert not word.startswith("-"), f"install option the test does not know: {word}"
            operands.append(word)
    placed = Placed(path="", owner=options["-o"], group=options["-g"], mode=options["-m"])
    return directory, operands, placed


def parse_recipe(block: str) -> Recipe:
    venv, pip_argv, user, useradd_argv = "", [], "", []
    files: dict[str, Placed] = {}
    directories: dict[str, Placed] = {}
    for argv in recipe_commands(block):
        if argv[:3] == ["python3", "-m", "venv"]:
            venv = argv[3]
        elif argv[0].endswith("/pip"):
            pip_argv = argv
        elif argv[0] == "useradd":
            user, useradd_argv = argv[-1], argv
        elif argv[0] == "install":
            directory, operands, placed = install_placements(argv)
            if directory:
                directories.update({path: replace(placed, path=path) for path in operands})
            else:
                source, target = operands
                files[source] = replace(placed, path=target)
    assert venv, "the recipe makes no venv"
    assert user, "the recipe creates no user"
    return Recipe(
        venv=venv,
        pip_argv=pip_argv,
        user=user,
        useradd_argv=useradd_argv,
        files=files,
        directories=directories,
    )


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return parse_recipe(readme_block("service-install"))


def test_the_recipe_parser_reads_the_forms_the_recipe_uses() -> None:
    parsed = parse_recipe(
        "getent passwd u >/dev/null || sudo useradd --system u\n"
        "sudo python3 -m venv /v  # a comment\n"
        "sudo /v/bin/pip install .\n"
        "sudo install -d -o u -g u -m 0700 /a /b\n"
        "sudo install -g u -m 0640 x.conf /etc/x.conf\n"
    )
    assert parsed.venv == "/v"
    assert parsed.pip_argv == ["/v/bin/pip", "install", "."]
    assert parsed.user == "u"
    assert parsed.directories["/b"] == Placed(path="/b", owner="u", group="u", mode="0700")
    assert parsed.files["x.conf"] == Placed(
        path="/etc/x.conf", owner="root", group="u", mode="0640"
    )


def test_the_unit_runs_the_gladd_the_recipe_installs(
    recipe: Recipe, service: dict[str, list[str]]
) -> None:
    # Into the venv, with the venv's pip: the system pip refuses (PEP 668) on Debian and Ubuntu.
    assert recipe.pip_argv == [f"{recipe.venv}/bin/pip", "install", "."]
    binary = f"{recipe.venv}/bin/gladd"
    assert binary == INSTALLED_BINARY
    for key in ("ExecStartPre", "ExecStart", "ExecReload"):
        assert service[key][0].split()[0] == binary, key


def test_the_recipe_installs_the_unit_where_ci_verifies_it(recipe: Recipe) -> None:
    unit = recipe.files["systemd/gladd.service"]
    assert unit == Placed(
        path="/etc/systemd/system/gladd.service", owner="root", group="root", mode="0644"
    )


def test_the_recipe_creates_the_user_and_group_the_unit_runs_as(
    recipe: Recipe, service: dict[str, list[str]]
) -> None:
    assert service["User"] == service["Group"] == [recipe.user]
    assert {"--system", "--user-group"} <= set(recipe.useradd_argv)
    assert recipe.useradd_argv[recipe.useradd_argv.index("--shell") + 1] == "/usr/sbin/nologin"


def test_the_recipe_installs_the_policies_and_env_file_the_unit_reads(
    recipe: Recipe, service: dict[str, list[str]]
) -> None:
    policies = recipe.files["policies.toml"]
    env_file = recipe.files["systemd/gladd.env.example"]
    assert service["Environment"] == [f"GLADD_POLICIES={policies.path}"]
    assert service["EnvironmentFile"] == [f"-{env_file.path}"]
    # Readable by the service, writable by root only; the env file holds secrets.
    for placed in (policies, env_file):
        assert (placed.owner, placed.group, placed.mode) == ("root", recipe.user, "0640")


@pytest.mark.parametrize(
    ("key", "base", "owner"),
    [
        ("ConfigurationDirectory", "/etc", "root"),
        ("StateDirectory", "/var/lib", "gladd"),
        ("LogsDirectory", "/var/log", "gladd"),
    ],
)
def test_the_recipe_creates_each_directory_as_the_unit_declares_it(
    recipe: Recipe, service: dict[str, list[str]], key: str, base: str, owner: str
) -> None:
    path = f"{base}/{service[key][0]}"
    assert recipe.directories[path] == Placed(
        path=path, owner=owner, group=recipe.user, mode=service[f"{key}Mode"][0]
    )


def test_every_file_the_recipe_installs_is_in_the_checkout(recipe: Recipe) -> None:
    assert [source for source in recipe.files if not (ROOT / source).is_file()] == []


def test_documentation_names_the_readme_the_package_installs_into_the_venv(
    recipe: Recipe,
) -> None:
    unit = parse_unit(UNIT.read_text())["Unit"]
    shared_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["shared-data"]
    assert unit["Documentation"] == [f"file:{recipe.venv}/{shared_data['README.md']}"]


def test_the_start_block_enables_the_unit_the_recipe_installs(recipe: Recipe) -> None:
    name = Path(recipe.files["systemd/gladd.service"].path).stem
    assert recipe_commands(readme_block("service-start")) == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", name],
    ]
