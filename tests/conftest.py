"""Shared fixtures: real node processes on loopback, and helpers to read their event logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

Event = dict[str, Any]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"


class NodeProcess:
    """A `mycelium node` process writing JSON-lines events to a file we read."""

    def __init__(self, root: Path, name: str, args: list[str], data_dir: Path | None = None) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir or self.dir / "data"
        self.args = args
        self.events_path = self.dir / f"events-{int(time.time() * 1000)}.jsonl"
        self.stderr_path = self.events_path.with_suffix(".err")
        command = [
            sys.executable,
            "-m",
            "mycelium",
            "node",
            "--listen",
            LOOPBACK,
            "--data-dir",
            str(self.data_dir),
            "--events",
            str(self.events_path),
            *args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=self.stderr_path.open("w"), env=env
        )

    def events(self) -> list[Event]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def wait_for(
        self, predicate: Callable[[Event], bool] | str, timeout: float = 60.0, after: int = 0
    ) -> Event:
        """The first event (from index `after`) matching `predicate` (or with that name)."""
        test = (lambda e: e["event"] == predicate) if isinstance(predicate, str) else predicate
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events()[after:]:
                if test(event):
                    return event
            if self.process.poll() is not None:
                for event in self.events()[after:]:
                    if test(event):
                        return event
                code = self.process.returncode
                raise AssertionError(f"{self.name} exited ({code}) before the event: {self.stderr()[-2000:]}")
            time.sleep(0.1)
        raise AssertionError(
            f"{self.name}: no such event within {timeout} s; stderr: {self.stderr()[-2000:]}"
        )

    @property
    def addr(self) -> str:
        return self.wait_for("listening", timeout=60)["addrs"][0]

    @property
    def peer_id(self) -> str:
        return self.wait_for("listening", timeout=60)["peer_id"]

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def rounds(self) -> list[Event]:
        return [e for e in self.events() if e["event"] == "round"]

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Start node processes; every one still running at the end of the test is killed."""
    started: list[NodeProcess] = []

    def start(name: str, *args: str, data_dir: Path | None = None) -> NodeProcess:
        node = NodeProcess(tmp_path, name, list(args), data_dir)
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mycelium", *args], capture_output=True, text=True, timeout=timeout
    )
