"""What a mesh of nodes is doing, folded from their JSON-lines events. Pure: events in, state out.

Used by `mycelium mesh` for its live view, its summary table, summary.json and report.png.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
LOG_LINES = 12


@dataclass
class NodeState:
    index: int
    shard: int
    rotation: int = 0
    peer_id: str = ""
    metrics: str = ""  # URL of its Prometheus endpoint (--node-arg=--metrics=127.0.0.1:0)
    group: str = ""
    round: int = -1
    accuracy: float = float("nan")
    local_accuracy: float = float("nan")
    peers: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    rounds: int = 0
    migrations: int = 0
    status: str = "starting"  # starting | running | finished | killed | exited
    holding: bool = False  # at the start line, waiting to be released
    exit_code: int | None = None
    history: list[tuple[int, float, str]] = field(default_factory=list)  # (round, accuracy, group)
    moves: list[tuple[int, str, str]] = field(default_factory=list)  # (round, from, to)

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "shard": self.shard,
            "rotation": self.rotation,
            "peer_id": self.peer_id,
            "final_group": self.group,
            "accuracy": None if self.accuracy != self.accuracy else round(self.accuracy, 4),
            "local_accuracy": None
            if self.local_accuracy != self.local_accuracy
            else round(self.local_accuracy, 4),
            "rounds": self.rounds,
            "migrations": self.migrations,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "status": self.status,
            "exit_code": self.exit_code,
            "metrics": self.metrics or None,
        }


@dataclass
class MeshState:
    nodes: dict[int, NodeState] = field(default_factory=dict)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))

    def add_node(self, index: int, shard: int, rotation: int) -> None:
        self.nodes[index] = NodeState(index=index, shard=shard, rotation=rotation)

    def apply(self, index: int, event: Event) -> None:
        node = self.nodes[index]
        kind = event.get("event")
        if kind == "listening":
            node.peer_id = event.get("peer_id", "")
            node.status = "running"
        elif kind == "joined":
            node.group = event["group"]
            verb = "created" if event.get("created") else "joined"
            self.log.append(f"node {index} {verb} group {event['group'][:8]}")
        elif kind == "migrated":
            node.migrations += 1
            node.moves.append((node.round + 1, event["from"], event["to"]))
            self.log.append(
                f"node {index} migrated {event['from'][:8]} → {event['to'][:8]} (gain {event['gain']:+.3f})"
            )
        elif kind == "split":
            self.log.append(f"node {index}: group {event['group'][:8]} split, moving to {event['to'][:8]}")
        elif kind == "round":
            node.round = event["round"]
            node.accuracy = event["accuracy"]
            node.local_accuracy = event.get("local_accuracy", float("nan"))
            node.peers = event.get("peers", node.peers)
            node.bytes_in += event.get("bytes_in", 0)
            node.bytes_out += event.get("bytes_out", 0)
            node.rounds += 1
            node.group = event["group"]
            node.history.append((event["round"], event["accuracy"], event["group"]))
        elif kind == "metrics":
            node.metrics = event.get("url", "")
            self.log.append(f"node {index} metrics at {node.metrics}")
        elif kind == "holding":
            node.holding = True
        elif kind == "finished":
            node.status = "finished"
        elif kind == "failed":  # a peer of a shared process (its process carries on)
            node.status = "exited"
            self.log.append(f"node {index} failed: {event.get('error', '')[:80]}")
        elif kind == "bootstrap_retry":
            self.log.append(f"node {index}: {event.get('message', '')[:80]}")

    def mark_exit(self, index: int, code: int, killed: bool) -> None:
        node = self.nodes[index]
        node.exit_code = code
        if killed:
            node.status = "killed"
            self.log.append(f"node {index} killed")
        elif node.status != "finished":
            node.status = "exited"
            self.log.append(f"node {index} exited with code {code}")

    def max_round(self) -> int:
        return max((n.round for n in self.nodes.values()), default=-1)

    def groups(self) -> dict[str, list[NodeState]]:
        members: dict[str, list[NodeState]] = {}
        for node in self.nodes.values():
            if node.group and node.status in ("running", "finished"):
                members.setdefault(node.group, []).append(node)
        return members

    def purity(self) -> float:
        """Share of nodes whose group holds only nodes of their own rotation."""
        live = [n for n in self.nodes.values() if n.group and n.status != "killed"]
        if not live:
            return float("nan")
        groups = self.groups()
        pure = sum(all(m.rotation == n.rotation for m in groups.get(n.group, [n])) for n in live)
        return pure / len(live)

    def summary(self) -> dict[str, Any]:
        finished = [n for n in self.nodes.values() if n.accuracy == n.accuracy and n.status != "killed"]
        accuracies = [n.accuracy for n in finished]
        return {
            "nodes": [n.summary() for n in sorted(self.nodes.values(), key=lambda n: n.index)],
            "groups": {g: sorted(n.index for n in members) for g, members in self.groups().items()},
            "mean_accuracy": round(sum(accuracies) / len(accuracies), 4) if accuracies else None,
            "min_accuracy": round(min(accuracies), 4) if accuracies else None,
            "purity": round(self.purity(), 4) if self.purity() == self.purity() else None,
            "migrations": sum(n.migrations for n in self.nodes.values()),
        }
