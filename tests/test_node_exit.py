"""A node process ends after it finished or was told to stop, even when py-libp2p will not let go."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

STUCK_IN_A_SHIELDED_CLEANUP = textwrap.dedent(
    """
    import sys, trio
    from mycelium.events import EventLog
    from mycelium.node.runner import ExitDeadline

    events = EventLog(sys.argv[1])
    deadline = ExitDeadline(events, seconds=1.0)
    events.listeners.append(deadline.on_event)

    async def main():
        events.emit("finished", rounds=3, migrations=0)
        with trio.CancelScope(shield=True):  # what py-libp2p's cleanups do on a wedged connection
            await trio.sleep_forever()

    trio.run(main)
    """
)


def test_a_node_stuck_after_finishing_still_exits_at_its_deadline(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", STUCK_IN_A_SHIELDED_CLEANUP, str(log)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events == ["finished", "exit_forced"]
