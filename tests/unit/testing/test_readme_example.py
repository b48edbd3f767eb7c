"""The README's "Testing your plugin" example, run as written: the doc cannot rot."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


def example_blocks() -> tuple[str, str]:
    text = README.read_text()
    section = text.split("#### 7. Testing your plugin", 1)[1].split("\n#### ", 1)[0]
    plugin, tests = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return plugin, tests


def test_the_readme_plugin_test_example_passes(tmp_path: Path) -> None:
    plugin, tests = example_blocks()
    (tmp_path / "example.py").write_text(plugin)
    (tmp_path / "test_example.py").write_text(tests)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # anyio's pytest plugin runs each test once per event loop installed: trio is there
    # when the test extra's selenium brought it.
    loops = 2 if importlib.util.find_spec("trio") is not None else 1
    assert f"{2 * loops} passed" in done.stdout
