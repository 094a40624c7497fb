"""Node processes for benchmarks: start `mycelium node` children on loopback, read their events.

Children die with the benchmark (PR_SET_PDEATHSIG) and are stopped by `NodeSet.close`.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mycelium.mesh.launcher import die_with_parent

Event = dict[str, Any]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for {pid}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


class Node:
    def __init__(self, root: Path, name: str, args: list[str]) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.events_path = self.dir / "events.jsonl"
        command = [
            sys.executable,
            "-m",
            "mycelium",
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
            str(self.dir / "data"),
            "--events",
            str(self.events_path),
            *args,
        ]
        with (self.dir / "stderr.log").open("wb") as stderr:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only libc prctl, before exec
            )

    def events(self) -> list[Event]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def wait_for(self, name: str, timeout: float) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event["event"] == name:
                    return event
            if self.process.poll() is not None:
                stderr = (self.dir / "stderr.log").read_text()[-1500:]
                raise RuntimeError(f"{self.dir.name} exited before {name!r}: {stderr}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.dir.name}: no {name!r} event within {timeout:.0f} s")


class NodeSet:
    """N nodes; node 0 starts alone, every later one bootstraps from a random listening node."""

    def __init__(self, root: Path, count: int, args: list[str], seed: int = 0) -> None:
        self.nodes: list[Node] = []
        self.addrs: list[str] = []
        rng = random.Random(seed)
        try:
            for index in range(count):
                bootstrap = ["--bootstrap", rng.choice(self.addrs)] if self.addrs else []
                node = Node(root, f"node-{index}", [*args, *bootstrap])
                self.nodes.append(node)
                self.addrs.append(node.wait_for("listening", timeout=120)["addrs"][0])
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                node.process.wait(timeout=8)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
