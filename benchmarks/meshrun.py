"""Run `mycelium mesh` as a user would and read what its nodes logged."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Event = dict[str, Any]


@dataclass
class MeshRun:
    out: Path
    seconds: float
    events: dict[int, list[Event]]  # node index -> its events

    def rounds(self, index: int) -> dict[int, Event]:
        """A node's last `round` event per round number."""
        return {e["round"]: e for e in self.events[index] if e["event"] == "round"}

    def mean_accuracy(self, round_number: int) -> float | None:
        values = [
            self.rounds(i)[round_number]["accuracy"] for i in self.events if round_number in self.rounds(i)
        ]
        return sum(values) / len(values) if len(values) == len(self.events) else None

    def finished_at(self, round_number: int) -> float:
        """When the last node that logged `round_number` did (a node that caught up past it did not)."""
        times = [self.rounds(i)[round_number]["time"] for i in self.events if round_number in self.rounds(i)]
        return max(times) if times else float("nan")


def run_mesh(out: Path, *args: str, allow_failure: bool = False) -> MeshRun:
    """Run the mesh; a non-zero exit ends the benchmark unless `allow_failure` (then read what ran)."""
    command = [sys.executable, "-m", "mycelium", "mesh", "--no-live", "--out", str(out), *args]
    print("$", " ".join(["mycelium", *command[3:]]), flush=True)
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "mesh.log"
    with log.open("w") as stdout:
        code = subprocess.run(command, stdout=stdout, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - started
    if code != 0 and not allow_failure:
        raise SystemExit(f"mycelium mesh exited with {code}:\n{log.read_text()[-3000:]}")
    events: dict[int, list[Event]] = {}
    for node_dir in sorted((out / "nodes").glob("node-*")):
        lines = (node_dir / "events.jsonl").read_text().splitlines()
        events[int(node_dir.name.split("-")[1])] = [json.loads(line) for line in lines if line.endswith("}")]
    return MeshRun(out, seconds, events)
