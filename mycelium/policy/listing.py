"""When a leader owes a copy of its group record to outsiders. Pure: the clock is passed in.

Members hear every version a leader writes on the group topic: one a round, and one at every
change. Outsiders read the copies in the DHT and on the task's discovery topic to choose a group to
join or move to. They need the leader and the members at once (a full group refuses them, a new
leader admits them), and the round and metrics only roughly: they measure a candidate's model
themselves. So a copy is due when the leader or the members differ from the last copy's, or
`period` seconds after it. On the discovery topic every version used to go to every peer of the
task, about 150 gossip sends each in a mesh of 30 (benchmarks/RESULTS.md, sixth and seventh
passes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord


def _listed(record: GroupRecord) -> tuple[PeerId, frozenset[PeerId]]:
    return record.leader, record.member_ids


@dataclass
class Listing:
    """The last copy sent to one place (the DHT, the discovery topic) and when the next is due."""

    period: float
    _sent_at: float = field(default=-math.inf, init=False)
    _sent: tuple[PeerId, frozenset[PeerId]] | None = field(default=None, init=False)

    def due(self, record: GroupRecord, now: float) -> bool:
        return _listed(record) != self._sent or now - self._sent_at >= self.period

    def sent(self, record: GroupRecord, now: float) -> None:
        self._sent_at, self._sent = now, _listed(record)
