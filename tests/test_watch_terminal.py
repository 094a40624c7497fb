"""`mycelium watch` without a browser: the Rich picture, plain lines, and clear errors."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console
from test_watch_view import T0, P, beat, two_groups
from test_watch_view import A as GROUP_A

from mycelium.watch.terminal import render, status_line


def picture_of(view) -> dict:  # type: ignore[no-untyped-def]
    return {**view.snapshot(T0), "observer": "", "status": "watching"}


def test_the_terminal_picture_shows_every_group_and_peer_with_what_they_report() -> None:
    view = two_groups()
    view.on_heartbeat(beat(1, GROUP_A, T0, accuracy=0.9312), T0)
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(render(picture_of(view)))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert GROUP_A[:8] in text and "3/10" in text and "2/10" in text
    assert all(str(P[i])[-6:] in text for i in range(5))
    assert "0.931" in text


def test_the_status_line_counts_groups_and_peers() -> None:
    line = status_line(picture_of(two_groups()))
    assert line.startswith("2 groups, 5 peers (0 silent): ")


def run_watch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mycelium", "watch", *args], capture_output=True, text=True, timeout=60
    )


def test_watch_without_a_bootstrap_peer_is_one_clear_line() -> None:
    result = run_watch("--task", "digits-mlp")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "mycelium: error: --bootstrap is required: the network is reached through a peer"
    )


def test_watch_with_a_bad_web_address_is_one_clear_line() -> None:
    peer = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWEmzxu7aUv8zbRgbZfT5W5uMUARAnQWEVJhntoSETKHha"
    result = run_watch("--task", "digits-mlp", "--bootstrap", peer, "--web", "localhost")
    assert result.returncode == 2
    assert "must look like HOST:PORT" in result.stderr and "Traceback" not in result.stderr
