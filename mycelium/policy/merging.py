"""Two diverged parts of one group becoming one again. Pure.

After a partition or a long stall each side of a group may have written versions of its own record
(neither valid against the other). A member that hears a version of its group led by a member or
former member, which is neither its own nor older nor a valid successor, has found the other part.
The leader of each part scores both parts' models on its own validation data and publishes a
`MergeOffer`; once a member holds both leaders' offers, `merge_winner` names the same winning part
at every member of both parts, and the losing part's members rejoin the winner through its leader.
"""

from __future__ import annotations

import math

from mycelium.policy.messages import MergeOffer
from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord


def merge_winner(first: MergeOffer, second: MergeOffer) -> PeerId:
    """The leader whose part wins, from the two parts' offers; every member computes the same.

    Part X's total is its own score at X's leader weighted by X's live members, plus the score the
    other leader gave X's model weighted by the other part's live members, so a lone stalled node's
    opinion of its own model cannot outvote the group's. Ties: more live members, then the lower
    leader id.
    """
    a, b = first.stamp.author, second.stamp.author
    weight_a, weight_b = max(1, first.live_members), max(1, second.live_members)
    total_a = weight_a * first.own_score + weight_b * second.other_score
    total_b = weight_a * first.other_score + weight_b * second.own_score
    rank_a = (round(total_a, 6), weight_a, a < b)
    rank_b = (round(total_b, 6), weight_b, b < a)
    return a if rank_a > rank_b else b


class DivergedPart:
    """The other part of our group (one at a time), its leader's offer and ours."""

    def __init__(self) -> None:
        self.record: GroupRecord | None = None  # its newest version we heard
        self.offers: dict[PeerId, MergeOffer] = {}  # by leader: ours and theirs, nothing else
        self.offered_at = -math.inf  # when our leader (we) last offered
        self.winner: GroupRecord | None = None  # set when the other part won: rejoin it

    def note(self, record: GroupRecord, now: float) -> None:
        """A version of the other part (a later one replaces the earlier; another part waits)."""
        held = self.record
        if held is not None and held.leader == record.leader:
            if record.version >= held.version:
                self.record = record
            return
        if held is not None and held.expires_at > now:
            return  # one diverged part at a time
        self.record, self.winner, self.offered_at = record, None, -math.inf
        self.offers = {}

    def clear(self) -> None:
        self.record, self.offers, self.offered_at, self.winner = None, {}, -math.inf, None

    def settled(self, listed: frozenset[PeerId], follows_us: bool, now: float) -> bool:
        """The other part's version expired, or its leader is one of ours now: listed by our version
        and following it (`follows_us`: its heartbeats name a version of our chain)."""
        if self.record is None:
            return False
        return self.record.expires_at <= now or (self.record.leader in listed and follows_us)

    def take_offer(self, offer: MergeOffer, our_leader: PeerId) -> bool:
        """Keep an offer from our leader or theirs; False for anyone else's."""
        author = offer.stamp.author
        if self.record is None or author not in (our_leader, self.record.leader):
            return False
        self.offers[author] = offer
        self._settle(our_leader)
        return True

    def offered(self, offer: MergeOffer, now: float) -> None:
        """We lead our part and published `offer`."""
        self.offers[offer.stamp.author] = offer
        self.offered_at = now
        self._settle(offer.stamp.author)

    def offer_due(self, me: PeerId, now: float, wait: float) -> bool:
        """We lead our part: offer when we have not, and again every `wait` until they answer."""
        if self.record is None or self.winner is not None:
            return False
        answered = self.record.leader in self.offers
        return me not in self.offers or (not answered and now - self.offered_at >= wait)

    def _settle(self, our_leader: PeerId) -> None:
        if self.record is None or self.winner is not None:
            return
        ours, theirs = self.offers.get(our_leader), self.offers.get(self.record.leader)
        if ours is not None and theirs is not None and merge_winner(ours, theirs) == self.record.leader:
            self.winner = self.record
