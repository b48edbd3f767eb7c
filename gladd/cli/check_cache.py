"""``gladd check``'s verdict cache: the same inputs print the same verdict, byte for byte,
without importing the policies model or a single plugin.

A full check's output (each write to stdout and stderr, in order) and its exit code are kept
in ``$XDG_CACHE_HOME/gladd/check/`` (default ``~/.cache/gladd/check/``), one file per key.
The key (:func:`verdict_key`) hashes what decides which inputs a check reads: gladd's
version, the interpreter and its ``sys.path``, the working directory, the command's flags,
every ``GLADD_*`` and ``OTEL_*`` variable, and the env file (its bytes and identity). The
entry then lists what the full check read, each looked at again on a hit (:func:`replay`):

- by content (sha256): the policies file (and ``./policies.toml`` when it was a candidate)
  and every ``*.py`` file of each plugin directory — a touch leaves the verdict as it was;
- each plugin directory's ``*.py`` listing: a new plugin, or one removed;
- by size and mtime_ns: every module outside the standard library the check imported
  (gladd itself in a checkout, the plugins' libraries, entry-point plugins), each
  ``sys.path`` directory (a distribution installed or removed there), and the secret files
  a plugin's ``*_file`` settings name;
- the variables a plugin's ``*_env`` settings name;
- and an expiry: the first schedule fire time shown, after which the times shown change.

A run whose inputs changed while it ran is not stored (a file modified since it began: its
content might be newer than what was checked). Nothing here raises: a cache directory that
cannot be read or written is skipped, and anything unusual — an env file that cannot be
read — means a full check. Secrets only enter hashes, never an entry in clear; the
directory is the user's own (mode 0700, entries 0600), and holds at most
:data:`MAX_ENTRIES` entries, the least recently used pruned first.

Only the standard library is imported here, and only light parts of it: this module is what
a cache hit runs, and it must stay a small fraction of the interpreter's own start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO, cast

from gladd.version import __version__

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Iterator

FORMAT = 1
"""Bumped when an entry's layout or meaning changes: older entries are then never read."""
MAX_ENTRIES = 64
KEY_ENV_PREFIXES = ("GLADD_", "OTEL_")
"""Settings (``GLADD_*``, any case, as pydantic-settings reads them) and the tracing
exporter's variables, which ``gladd check`` shows or refuses."""
SERVICE_ENV_FILE = "/etc/gladd/gladd.env"
""":data:`gladd.settings.SERVICE_ENV_FILE`, spelt here so a cache hit need not import the
settings model (a test holds the two equal)."""
CONTENT_LIMIT = 4 * 1024 * 1024
"""Files up to this size are followed by content (the policies file's own limit); a larger
one, by size and time."""
RACE_SLACK_NS = 10_000_000
"""File times come from a coarse clock (one jiffy: 10 ms at most): a file changed this soon
before a run began may still have changed during it."""


class Reads:
    """What a full check read beyond the key, filled in by :mod:`gladd.cli.check_verdict`."""

    __slots__ = ("contents", "environ", "expires", "plugin_dirs", "stat_files")

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.contents: list[str] = []
        """Files the verdict depends on byte for byte (absent ones too)."""
        self.plugin_dirs: list[str] = []
        self.stat_files: list[str] = []
        """Files read for a plugin's settings (secrets): by size and time, never content."""
        self.environ = RecordingEnviron(environ)
        self.expires: float | None = None
        """The first fire time shown (epoch seconds): the output is stale from then on."""

    def expire_at(self, when: float) -> None:
        self.expires = when if self.expires is None else min(self.expires, when)


class RecordingEnviron(Mapping[str, str]):
    """The environment a plugin's settings are resolved from, remembering what was read:
    each variable by name, or all of them once iterated."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.read: dict[str, str | None] = {}
        self.read_all = False

    def __getitem__(self, name: str) -> str:
        value = self._environ.get(name)
        self.read[name] = value
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        self.read_all = True
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


class Recording:
    """Within ``with``: every write to ``sys.stdout`` and ``sys.stderr`` goes through, and is
    kept, in order, as ``(stream, text)`` (0 for stdout, 1 for stderr)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, str]] = []
        self._saved: tuple[TextIO, TextIO] | None = None

    def __enter__(self) -> Recording:
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = cast("TextIO", _Tee(sys.stdout, 0, self.chunks))
        sys.stderr = cast("TextIO", _Tee(sys.stderr, 1, self.chunks))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None
        sys.stdout, sys.stderr = self._saved


class _Tee:
    """Delegates all but ``write`` (``flush``, ``encoding``, ``isatty``...) to the stream."""

    def __init__(self, stream: TextIO, index: int, chunks: list[tuple[int, str]]) -> None:
        self._stream = stream
        self._index = index
        self._chunks = chunks

    def write(self, text: str) -> int:
        self._chunks.append((self._index, text))
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# -- the key --------------------------------------------------------------------------------


def verdict_key(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str | None:
    """The cache key of ``gladd check`` run with ``args`` here and now, or None: no cache
    for this run (it cannot be keyed cheaply, so a full check says what is wrong)."""
    env = os.environ if environ is None else environ
    try:
        env_file = _env_file_part(getattr(args, "env_file", None), env)
        if env_file is None:
            return None
        path = getattr(args, "path", None)
        parts = {
            "format": FORMAT,
            "gladd": __version__,
            "python": [sys.version, sys.executable, sys.prefix, sys.path],
            "cwd": os.getcwd(),
            "flags": [
                None if path is None else os.fspath(path),
                bool(getattr(args, "allow_broken_plugins", False)),
                bool(getattr(args, "json", False)),
            ],
            "env": sorted((k, v) for k, v in env.items() if k.upper().startswith(KEY_ENV_PREFIXES)),
            "env_file": env_file,
        }
    except (OSError, ValueError, TypeError):
        return None
    return _digest(json.dumps(parts, sort_keys=True).encode())


def _env_file_part(given: object, env: Mapping[str, str]) -> list[Any] | None:
    """The env file in use (as :func:`gladd.settings.env_file_in_use` picks it): its path,
    identity and digest; ``[]`` for none; None when it cannot be read."""
    if given is not None:
        name = os.fspath(given)  # type: ignore[call-overload]
    elif "GLADD_ENV_FILE" in env:
        name = env["GLADD_ENV_FILE"]
        if not name:
            return []
    elif os.path.isfile(SERVICE_ENV_FILE) and os.access(SERVICE_ENV_FILE, os.R_OK):
        name = SERVICE_ENV_FILE
    else:
        return []
    try:
        info, data = _read_small_file(name)
    except OSError:
        return None
    if data is None:
        return None
    return [name, os.path.realpath(name), info.st_dev, info.st_ino, _digest(data)]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- hits -----------------------------------------------------------------------------------


def cache_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """``$XDG_CACHE_HOME/gladd/check`` (an absolute one; else ``~/.cache``), None without a
    home."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # relative ones are invalid (XDG Base Directory spec)
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "gladd", "check")


def replay(key: str, *, now: float | None = None, directory: str | None = None) -> int | None:
    """Print the verdict stored under ``key`` and return its exit code, if it still holds
    (nothing it read has changed, none of the times it shows has passed); else None and
    nothing printed."""
    entry = _entry_path(key, directory)
    if entry is None:
        return None
    try:
        with open(entry, "rb") as file:
            stored = json.loads(file.read())
        if stored["format"] != FORMAT or stored["key"] != key:
            return None
        expires = stored["expires"]
        if expires is not None and (time.time() if now is None else now) >= expires:
            return None
        if not all(_holds(dep) for dep in stored["deps"]):
            return None
        chunks = [(int(stream), str(text)) for stream, text in stored["chunks"]]
        code = int(stored["code"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    with contextlib.suppress(OSError):
        os.utime(entry)  # recently used: pruned last
    streams = (sys.stdout, sys.stderr)
    for stream, text in chunks:
        streams[stream].write(text)
    return code


def _entry_path(key: str, directory: str | None) -> str | None:
    directory = directory or cache_dir()
    return None if directory is None else os.path.join(directory, f"{key}.json")


def _holds(dep: list[Any]) -> bool:
    expected: object
    kind, path, expected = dep
    if kind == "sha":
        return _content(path) == expected
    if kind == "stat":
        return _stat(path) == expected
    if kind == "ls":
        return _listing(path) == expected
    if kind == "env":
        value = os.environ.get(path)
        return (None if value is None else _digest(value.encode())) == expected
    if kind == "environ":
        return _environ_digest() == expected
    return False


def _environ_digest() -> str:
    return _digest(json.dumps(sorted(os.environ.items())).encode())


def _content(path: str) -> str | None:
    """The file's sha256; None when it is absent; else what it is instead of a small regular
    file (a FIFO, a directory, a file over :data:`CONTENT_LIMIT` — the check refuses those,
    saying which), or why it cannot be read."""
    try:
        info, data = _read_small_file(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unreadable: errno {exc.errno}"
    if data is None:
        return f"mode {info.st_mode:o}, {info.st_size} bytes, mtime_ns {info.st_mtime_ns}"
    return _digest(data)


def _read_small_file(path: str) -> tuple[os.stat_result, bytes | None]:
    """The file's status and, when it is a regular file within :data:`CONTENT_LIMIT`, its
    bytes. Never waits: a FIFO is opened non-blocking and not read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > CONTENT_LIMIT:
            return info, None
        return info, file.read()


def _stat(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def _listing(path: str) -> list[str] | None:
    try:
        return sorted(name for name in os.listdir(path) if name.endswith(".py"))
    except OSError:
        return None


# -- storing --------------------------------------------------------------------------------


def store(
    key: str,
    recording: Recording,
    code: int,
    reads: Reads,
    *,
    started_ns: int,
    directory: str | None = None,
) -> bool:
    """Keep a full check's verdict under ``key``; whether it was kept (a cache that cannot
    be written, or inputs that changed while the check ran: not kept, silently)."""
    entry = _entry_path(key, directory)
    if entry is None:
        return False
    try:
        deps = list(_deps(reads))
        if any(_changed_since(dep, started_ns - RACE_SLACK_NS) for dep in deps):
            return False
        data = json.dumps(
            {
                "format": FORMAT,
                "key": key,
                "expires": reads.expires,
                "code": code,
                "chunks": recording.chunks,
                "deps": deps,
            }
        ).encode()
        folder = os.path.dirname(entry)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        _write_atomically(entry, data)
        prune(folder)
    except (OSError, ValueError, TypeError):
        return False
    return True


def _deps(reads: Reads) -> Iterator[list[Any]]:
    hashed: set[str] = set()
    for directory in reads.plugin_dirs:
        listing = _listing(directory)
        yield ["ls", directory, listing]
        hashed.update(os.path.join(directory, name) for name in listing or ())
    hashed.update(reads.contents)
    for path in sorted(hashed):
        yield ["sha", path, _content(path)]
    for path in sorted({*reads.stat_files, *_module_files(), *_path_dirs()} - hashed):
        yield ["stat", path, _stat(path)]
    for name, value in sorted(reads.environ.read.items()):
        yield ["env", name, None if value is None else _digest(value.encode())]
    if reads.environ.read_all:
        yield ["environ", "", _environ_digest()]


def _module_files() -> Iterator[str]:
    """The source of every module imported, but the standard library's (the interpreter's
    version and path are in the key)."""
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and name.partition(".")[0] not in sys.stdlib_module_names:
            yield os.path.abspath(path)


def _path_dirs() -> Iterable[str]:
    return [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]


def _changed_since(dep: list[Any], since_ns: int) -> bool:
    kind, path, _ = dep
    if kind in {"env", "environ"}:
        return False
    try:
        return os.stat(path).st_mtime_ns >= since_ns
    except OSError:
        return False


def _write_atomically(path: str, data: bytes) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def prune(directory: str, keep: int = MAX_ENTRIES) -> None:
    """Keep the ``keep`` most recently used entries; remove the rest and any temporary file
    a killed run left behind."""
    entries = []
    stale = time.time() - 3600
    with os.scandir(directory) as found:
        for item in found:
            info = item.stat()
            if item.name.endswith(".tmp") and info.st_mtime < stale:
                os.unlink(item.path)
            elif item.name.endswith(".json"):
                entries.append((info.st_mtime_ns, item.path))
    for _, path in sorted(entries, reverse=True)[keep:]:
        with contextlib.suppress(OSError):
            os.unlink(path)
