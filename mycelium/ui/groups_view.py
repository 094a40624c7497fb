"""`mycelium groups`: a task's groups as a table or as JSON."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mycelium.policy.records import GroupRecord
from mycelium.ui.tables import print_table


def record_json(record: GroupRecord, now: float) -> dict[str, Any]:
    return {
        "group_id": record.group_id,
        "name": record.name,
        "task": record.task,
        "policy": record.policy.value,
        "capacity": record.capacity,
        "round": record.round,
        "members": [
            {
                "peer_id": str(m.peer_id),
                "last_seen_s_ago": round(now - m.last_seen, 1),
                "addrs": list(m.addrs),
            }
            for m in record.members
        ],
        "metrics": {
            "accuracy": round(record.metrics.accuracy, 4),
            "loss": round(record.metrics.loss, 4),
            "samples": record.metrics.samples,
            "rounds_per_minute": round(record.metrics.rounds_per_minute, 2),
        },
        "model_fingerprint": record.model_fingerprint,
        "creator": str(record.creator),
        "leader": str(record.leader),
        "version": record.version,
        "updated_s_ago": round(now - record.updated_at, 1),
        "expires_in_s": round(record.expires_at - now, 1),
    }


def print_groups_table(
    task: str, records: list[GroupRecord], now: float, console: Console | None = None
) -> None:
    console = console or Console()
    if not records:
        console.print(f"no groups found for task [bold]{task}[/bold]")
        return
    table = Table(title=f"groups of task {task}")
    for column in (
        "group",
        "name",
        "members",
        "policy",
        "round",
        "accuracy",
        "loss",
        "samples",
        "rounds/min",
        "updated",
    ):
        table.add_column(column, justify="right" if column not in ("group", "name", "policy") else "left")
    for r in records:
        members = f"{len(r.members)}/{r.capacity}\n" + "\n".join(f"…{str(m.peer_id)[-8:]}" for m in r.members)
        table.add_row(
            r.group_id,
            r.name,
            members,
            r.policy.value,
            str(r.round),
            f"{r.metrics.accuracy:.3f}",
            f"{r.metrics.loss:.3f}",
            str(r.metrics.samples),
            f"{r.metrics.rounds_per_minute:.1f}",
            f"{now - r.updated_at:.0f} s ago",
        )
    print_table(console, table)  # whole cells when piped, too
