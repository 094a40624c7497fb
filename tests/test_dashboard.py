"""The node dashboard as a person sees it: a real node in a pseudo-terminal, read off the screen."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pyte
from rich.console import Console

from mycelium.ui.dashboard import CandidateRow, MemberRow, Snapshot, plain_line, render, sparkline

COLUMNS, ROWS = 150, 50


class Terminal:
    """A child process on a pseudo-terminal, its output fed to a VT100 screen emulator."""

    def __init__(self, command: list[str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child sizes its terminal before the program can ask for the size
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
            env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
            os.execve(command[0], command, {**env, "TERM": "xterm-256color"})
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.ByteStream(self.screen)

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.stream.feed(os.read(self.fd, 1 << 16))
                except OSError:
                    break
            match = re.search(pattern, self.text())
            if match:
                return match
        raise AssertionError(f"screen never showed {pattern!r}:\n{self.text()}")

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        os.close(self.fd)


def test_the_dashboard_shows_the_real_peer_count_group_and_round(spawn, tmp_path: Path) -> None:
    boot = spawn("boot", "--group", "none")
    learner = spawn("learner", "--bootstrap", boot.addr, "--shard", "0/2", "--partition", "iid")
    group = learner.wait_for("joined")["group"]
    terminal = Terminal(
        [
            sys.executable,
            "-m",
            "mycelium",
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
            str(tmp_path / "dash"),
            "--bootstrap",
            boot.addr,
            "--shard",
            "1/2",
            "--partition",
            "iid",
            "--dashboard",
        ]
    )
    try:
        terminal.wait_for(rf"group {group[:8]} .* 2/10 members", timeout=90)
        terminal.wait_for(r"network +peers 2 ", timeout=30)  # the bootstrap peer and the other member
        shown = int(
            terminal.wait_for(r"round (\d+): (training|collecting|aggregating|evaluating|done)", 30).group(1)
        )
        rounds_done = [e["round"] for e in learner.rounds()]
        assert shown >= 1 and rounds_done and abs(shown - rounds_done[-1]) <= 50
        terminal.wait_for(r"accuracy [▁▂▃▄▅▆▇█]+ 0\.\d{3}", timeout=30)  # once a round closed here
        screen = terminal.text()
        assert "(me)" in screen and "★" in screen  # us, and the leader marked
        assert re.search(r"in +\d", screen)
    finally:
        terminal.close()


def test_without_a_terminal_the_dashboard_prints_plain_lines(spawn, tmp_path: Path) -> None:
    boot = spawn("boot", "--group", "none")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mycelium",
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
            str(tmp_path / "d"),
            "--bootstrap",
            boot.addr,
            "--dashboard",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = []
        deadline = time.time() + 90
        while time.time() < deadline and not any(
            "group=" in line and "group=-" not in line for line in lines
        ):
            lines.append(process.stdout.readline())
        assert any(
            re.search(r"peers=1 dht=\d+ group=[0-9a-f]{8} members=1 round=\d+", line) for line in lines
        ), lines
        assert not any("\x1b[" in line for line in lines)
    finally:
        process.kill()
        process.wait()


def test_render_places_every_panel() -> None:
    snap = Snapshot(
        peer_id="12D3KooWabc",
        addrs=("/ip4/10.0.0.1/tcp/4001",),
        uptime_s=65,
        peers=3,
        routing_table=3,
        stored_records=2,
        bytes_in=12_345,
        bytes_out=999,
        learns=True,
        group="ab" * 16,
        group_name="g",
        capacity=10,
        members=(
            MemberRow("12D3KooWme", True, True, 0.0, 5, 0.9),
            MemberRow("12D3KooWother", False, False, 1.5, 5, 0.8),
        ),
        round=5,
        phase="collecting",
        announced=2,
        contributed=1,
        accuracy=(0.1, 0.5, 0.9),
        loss=(2.0, 1.0, 0.5),
        candidates=(CandidateRow("cd" * 16, 3, 0.99, 0.12),),
        events=("12:00:00 joined group=abab",),
    )
    console = Console(width=130, height=44, record=True, file=open(os.devnull, "w"))
    console.print(render(snap))
    text = console.export_text()
    for expected in (
        "peers 3",
        "group abababab g — 2/10 members",
        "round 5: collecting",
        "announced 2/2",
        "received 1/2",
        "1.5 s ago",
        "12.3 kB",
        "cdcdcdcd",
        "0.990",
        "0.120",
        "joined group=abab",
    ):
        assert expected in text, expected
    assert "group=abababab members=2 round=5 phase=collecting accuracy=0.900" in plain_line(snap)


def test_sparklines_scale_into_eight_levels() -> None:
    assert sparkline((0.0, 0.5, 1.0), 0.0, 1.0) == "▁▄█"
    assert sparkline((float("nan"),)) == ""
    assert sparkline((3.0, 3.0)) == "▁▁"
