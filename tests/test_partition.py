"""A group cut in two by a real network partition (Linux network namespaces) becomes one group again.

Runs benchmarks/partition.py, which needs root and iproute2; part of `pytest -m slow` (minutes each).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "partition.py"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("split", "leader_side"),
    [(4, "a"), (5, "a"), (3, "a")],
    ids=["4/4", "leader with the majority 5/3", "leader with the minority 3/5"],
)
def test_a_partitioned_group_is_one_group_again_within_60_s_of_healing(
    split: int, leader_side: str, tmp_path: Path
) -> None:
    assert os.geteuid() == 0 and shutil.which("ip") and shutil.which("tc"), (
        "this test needs root and iproute2 (ip, tc): it builds two network namespaces"
    )
    result_file = tmp_path / "result.json"
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--split",
            str(split),
            "--leader-side",
            leader_side,
            "--json",
            str(result_file),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result_file.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(result_file.read_text())
    assert all(rounds > 0 for rounds in result["rounds_during_cut"].values()), "both halves keep training"
    healed = result["one_group_after_heal_s"]
    assert healed is not None and healed <= 60, run.stdout[-3000:]
    assert result["still_one_group"], run.stdout[-3000:]
    assert run.returncode == 0, run.stdout[-3000:]
