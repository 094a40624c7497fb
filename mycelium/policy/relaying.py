"""Whom to relay a group-topic message to: not to subscribers that hear its author themselves.

Every member sends its own messages straight to every subscriber it is connected to (flood
publishing), and the members of a group dial each other, so in a healthy group every member
already has a message before anyone could relay it. GossipSub's mesh relays it anyway: in a group
of ten a message cost about 50 sends instead of 9 (benchmarks/RESULTS.md).

So each member lists, in its heartbeat, the authors whose own messages reached it from them over
the wire within `hear_window`, and a member skips the relays GossipSub would send of those
authors' messages to it. Nothing else changes: we never send a relay GossipSub would not. A
subscriber that has said nothing lately (one that just came, an observer, a peer running other
software, a member whose heartbeats are late) gets every relay GossipSub sends it, and so does the
message of any author it did not list: a member it cannot reach, a newcomer, the leader of a part
of the group that split off. When a connection dies without either side noticing, the author drops
off the list within `hear_window` and relays resume with the next heartbeat. A list changes only
what is sent to the peer that made it, so a lying peer can cost only itself.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

HEAR_WINDOW_HEARTBEATS = 2.5  # heard directly within this many heartbeat intervals: listed
DECLARATION_TTL_HEARTBEATS = 3.0  # a list older than this counts as none: relay as GossipSub does
MAX_LISTED = 64  # authors one heartbeat may list (a group's most members); the latest heard first
MAX_DECLARATIONS = 256  # subscribers of one topic whose lists we keep (oldest forgotten first)


@dataclass(frozen=True)
class Declaration:
    hears: frozenset[bytes]  # authors the declarer hears directly: relays of theirs it does not need
    at: float


class Relaying:
    """One group topic's relay state: whom we hear directly, and whom each subscriber hears.

    Peers are raw libp2p peer-id bytes; `now` is a monotonic clock's seconds.
    """

    def __init__(self, heartbeat: float) -> None:
        self.hear_window = HEAR_WINDOW_HEARTBEATS * heartbeat
        self.declaration_ttl = DECLARATION_TTL_HEARTBEATS * heartbeat
        self._heard: OrderedDict[bytes, float] = OrderedDict()  # author -> last direct message, oldest first
        self._declared: OrderedDict[bytes, Declaration] = OrderedDict()

    def heard_directly(self, author: bytes, now: float) -> None:
        """`author`'s own message reached us from `author` itself."""
        self._heard[author] = now
        self._heard.move_to_end(author)
        while len(self._heard) > MAX_LISTED:
            self._heard.popitem(last=False)

    def hears(self, now: float) -> frozenset[bytes]:
        """The authors we heard directly lately: what our heartbeat lists."""
        return frozenset(author for author, at in self._heard.items() if now - at <= self.hear_window)

    def declare(self, peer: bytes, hears: frozenset[bytes] | None, now: float) -> None:
        """`peer`'s latest heartbeat listed `hears` (None: it listed nothing, not even an empty list)."""
        self._declared.pop(peer, None)
        if hears is None:
            return
        self._declared[peer] = Declaration(hears, now)
        while len(self._declared) > MAX_DECLARATIONS:
            self._declared.popitem(last=False)

    def relay_to(self, peer: bytes, author: bytes, now: float) -> bool:
        """Whether `peer` needs the relay GossipSub would send it of `author`'s message."""
        declaration = self._declared.get(peer)
        if declaration is None or now - declaration.at > self.declaration_ttl:
            return True
        return author not in declaration.hears
