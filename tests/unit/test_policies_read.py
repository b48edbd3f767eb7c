"""Reading a policies file: only a regular file, bounded in size and in time."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import anyio
import pytest

from gladd.errors import PolicyError
from gladd.policies import load_policies
from gladd.policies.read import (
    MAX_POLICIES_BYTES,
    read_policies_file,
    read_policies_file_async,
)

SHIPPED = Path(__file__).resolve().parents[2] / "policies.toml"


def refusal(path: Path, **kwargs: object) -> str:
    started = time.monotonic()
    with pytest.raises(PolicyError) as caught:
        read_policies_file(path, **kwargs)  # type: ignore[arg-type]
    assert time.monotonic() - started < 2, "a refusal is prompt"
    (line,) = str(caught.value).splitlines()
    return line


def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "policies.toml"
    os.mkfifo(fifo)
    assert refusal(fifo) == (
        f"{fifo}: is a FIFO (named pipe), not a regular file; put the policies file itself here"
    )
    with pytest.raises(PolicyError, match="is a FIFO"):
        load_policies(fifo)  # what gladd check and gladd run start-up use


def test_a_symlink_to_dev_zero_is_refused_naming_its_target(tmp_path: Path) -> None:
    link = tmp_path / "policies.toml"
    link.symlink_to("/dev/zero")
    assert refusal(link) == (
        f"{link}: is a character device (a symlink to /dev/zero), not a regular file; "
        "put the policies file itself here"
    )


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path).startswith(f"{tmp_path}: is a directory, not a regular file")


def test_a_file_over_the_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "policies.toml"
    with huge.open("wb") as f:
        f.truncate(60 * 1024 * 1024)  # sparse: its size is what counts
    assert refusal(huge) == (
        f"{huge}: is 60 MiB, over the 4 MiB limit for a policies file; is this the right file?"
    )
    with huge.open("wb") as f:
        f.truncate(5 * 1024**3)
    assert "is 5.0 GiB, over the 4 MiB limit" in refusal(huge)


def test_a_file_of_exactly_the_limit_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "policies.toml"
    path.write_bytes(b"#" * MAX_POLICIES_BYTES)
    assert len(read_policies_file(path)) == MAX_POLICIES_BYTES
    path.write_bytes(b"#" * (MAX_POLICIES_BYTES + 1))
    assert "over the 4 MiB limit" in refusal(path)


def test_a_regular_file_reads_as_its_bytes() -> None:
    assert read_policies_file(SHIPPED) == SHIPPED.read_bytes()


def test_os_errors_are_left_to_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_policies_file(tmp_path / "absent.toml")


def test_a_read_that_never_returns_is_abandoned_and_not_piled_up(tmp_path: Path) -> None:
    # A stalled network or FUSE mount cannot be made here: a reader blocking on an event
    # stands in for the read(2) that does not return.
    path = tmp_path / "policies.toml"
    path.write_bytes(b"")
    release = threading.Event()
    calls: list[float] = []

    def stuck(p: Path, limit: int) -> bytes:
        calls.append(time.monotonic())
        release.wait()
        return b"late"

    line = refusal(path, timeout=0.2, read=stuck)
    assert line == (
        f"{path}: could not be read within 200ms (a stuck network or FUSE file system?); "
        "the read was abandoned"
    )
    # While it stays stuck, later reads are refused at once instead of adding threads.
    assert "an earlier read of it has not returned for" in refusal(path, timeout=5, read=stuck)
    assert len(calls) == 1
    release.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            assert read_policies_file(path) == b""
            break
        except PolicyError:  # the stuck thread is still returning
            time.sleep(0.01)
    else:
        raise AssertionError("reads did not resume after the stuck one returned")


@pytest.mark.anyio
async def test_an_async_read_is_cancelled_at_once_even_while_stuck(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_bytes(b"")
    release = threading.Event()

    def stuck(p: Path, limit: int) -> bytes:
        release.wait()
        return b""

    started = time.monotonic()
    with anyio.move_on_after(0.2):
        await read_policies_file_async(path, timeout=60, read=stuck)
    assert time.monotonic() - started < 2  # shutdown never waits for the read
    release.set()
