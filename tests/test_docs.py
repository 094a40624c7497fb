"""The README stays true: its commands are what CI runs, and its CLI reference is current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n((?:apt-get install -y chromium && )?python3 -m venv .*)\n```", README)


def test_the_readme_opens_with_the_demo_and_the_test_commands() -> None:
    demo, tests = readme_commands()[:2]
    assert demo.endswith("mycelium mesh --nodes 10 --rounds 20")
    assert tests.endswith("python -m pytest")
    assert tests.startswith("apt-get install -y chromium && ")  # the explorer's browser test needs it
    assert README.index(demo) < README.index(tests) < README.index("## What it is")


def test_ci_runs_exactly_the_readme_set_up_and_test_command() -> None:
    tests = readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_the_cli_reference_in_the_readme_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
