"""What every task of a running node is waiting on, for `kill -USR2 <pid>` (printed to stderr)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any

import trio

MAX_DEPTH = 40


def _frames(coro: Any) -> list[str]:
    """The chain of awaits a coroutine is suspended in, outermost first."""
    found = []
    for _ in range(MAX_DEPTH):
        if coro is None:
            break
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is not None:
            found.append(f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}:{frame.f_lineno}")
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return found


def dump_tasks(out: IO[str] = sys.stderr) -> None:
    """Print the task tree of the running trio loop: each task and where it waits."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        lines.append(f"{'  ' * depth}{task.name}: {' > '.join(_frames(task.coro))}")
        for nursery in task.child_nurseries:
            for child in sorted(nursery.child_tasks, key=lambda t: t.name):
                walk(child, depth + 1)

    walk(trio.lowlevel.current_root_task(), 0)
    out.write("--- trio tasks ---\n" + "\n".join(lines) + "\n--- end ---\n")
    out.flush()
