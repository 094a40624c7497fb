"""Is a message new? Pure: the receiver's clock is passed in.

Theory of operation. Signatures prove who wrote a message, not when: anyone can re-publish a signed
heartbeat of a member that has since died, and GossipSub forgets what it has seen after 120 s. So
every group-topic message carries its author's clock (`sent_at`) and a sequence number that grows
with every message of that kind the author sends. A receiver drops a message

- dated further than `window` from its own clock, either way (STALE: old, replayed late, or from a
  clock too far off to trust), or
- whose sequence number is not above the last one it took from that author for that kind
  (REPLAYED: a duplicate or an old message replayed inside the window).

Kinds are tracked apart because GossipSub reorders: a heartbeat may overtake the announcement its
author sent a millisecond before. The memory of authors is bounded (least recently heard go first),
and every drop is counted by reason.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from enum import Enum
from typing import Generic, TypeVar

Author = TypeVar("Author")

FRESHNESS_WINDOW = 60.0
REMEMBERED_AUTHORS = 512


class Fresh(Enum):
    FRESH = "fresh"
    STALE = "stale"
    REPLAYED = "replayed"


class Freshness(Generic[Author]):
    def __init__(self, window: float = FRESHNESS_WINDOW, capacity: int = REMEMBERED_AUTHORS) -> None:
        self.window = window
        self._capacity = capacity
        self._last: OrderedDict[tuple[Author, str], int] = OrderedDict()
        self.dropped: Counter[str] = Counter()

    def check(self, author: Author, kind: str, seq: int, sent_at: float, now: float) -> Fresh:
        """Judge one message and, when it is fresh, remember its sequence number."""
        if not abs(now - sent_at) <= self.window:  # also catches NaN
            self.dropped[Fresh.STALE.value] += 1
            return Fresh.STALE
        key = (author, kind)
        last = self._last.get(key)
        if last is not None and seq <= last:
            self.dropped[Fresh.REPLAYED.value] += 1
            return Fresh.REPLAYED
        self._last[key] = seq
        self._last.move_to_end(key)
        while len(self._last) > self._capacity:
            self._last.popitem(last=False)
        return Fresh.FRESH

    def in_window(self, sent_at: float, now: float) -> bool:
        """The stateless half of `check`, for relaying decisions (gossip validators)."""
        return abs(now - sent_at) <= self.window
