"""One version: what the build stamps on the package is what ``gladd --version`` says."""

from __future__ import annotations

from importlib.metadata import version

import gladd
from gladd.version import __version__


def test_the_installed_package_carries_the_version_the_code_reports() -> None:
    assert version("gladd") == __version__
    assert gladd.__version__ == __version__
