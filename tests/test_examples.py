"""The examples run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_small_group_prints_one_line_per_round_with_the_same_model_on_every_peer() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "small_group.py"), "--nodes", "3", "--rounds", "3"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rounds = [line.split() for line in lines if line.split() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rounds] == [1, 2, 3]
    assert all(len(r) == 5 and r[-1] == "yes" for r in rounds), result.stdout
    assert float(rounds[-1][1]) > 0.3  # learning, not chance (0.1)
