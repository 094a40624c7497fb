"""What arrives on a group's topic, decoded once at the edge and handed to whoever decides on it.

Records, heartbeats, goodbyes, splits and merge offers go to the membership state machine
(policy/membership.py); update announcements of the current round and the next two are kept for the
round (node/round.py), at most one per listed member and round. The relay check runs inside
GossipSub's validator: what does not decode or is outside the freshness window is not passed on.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from mycelium.errors import InvalidMessage
from mycelium.net.messages import decode_group_message
from mycelium.net.signing import Signed
from mycelium.net.traffic import Refusal
from mycelium.node.splitting import follow_split
from mycelium.policy.membership import Heard, RecordVerdict
from mycelium.policy.messages import Announce, Goodbye, Heartbeat, MergeOffer, SplitNotice
from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord

if TYPE_CHECKING:
    from mycelium.node.session import GroupSession

log = logging.getLogger(__name__)

ROUNDS_BUFFERED = 3  # announcements kept for the current round and the next two
REPORTED = (RecordVerdict.FORGED, RecordVerdict.REFUSED_TAKEOVER, RecordVerdict.FORK)
REFUSALS: dict[Heard | RecordVerdict, Refusal] = {  # what the metrics count as refused, by reason
    Heard.NOT_MEMBER: Refusal.NOT_MEMBER,
    Heard.OTHER_GROUP: Refusal.OTHER_GROUP,
    Heard.STALE: Refusal.STALE,
    Heard.REPLAYED: Refusal.REPLAYED,
    Heard.NOT_LEADER: Refusal.NOT_LEADER,
    RecordVerdict.STALE: Refusal.OLD_VERSION,
    RecordVerdict.FORK: Refusal.FORK,
    RecordVerdict.FORGED: Refusal.FORGED,
    RecordVerdict.REFUSED_TAKEOVER: Refusal.REFUSED_TAKEOVER,
    RecordVerdict.OTHER_GROUP: Refusal.OTHER_GROUP,
}


class GroupInbox:
    def __init__(self, session: GroupSession) -> None:
        self._session = session
        self._announced: dict[int, dict[PeerId, Announce]] = {}

    def announces(self, round_number: int) -> dict[PeerId, Announce]:
        return self._announced.get(round_number, {})

    def keep_from(self, round_number: int) -> None:
        self._announced = {r: a for r, a in self._announced.items() if r >= round_number}

    def relay(self, signed: Signed) -> bool:
        """Relay only what decodes and is fresh: a replayed message dies at the first honest peer."""
        session = self._session
        now = session.services.clock()
        message = decode_group_message(signed, now)
        stamp = getattr(message, "stamp", None)
        return stamp is None or session.freshness.in_window(stamp.sent_at, now)

    def on_signed(self, signed: Signed) -> None:
        session = self._session
        now, membership = session.services.clock(), session.membership
        try:
            message = decode_group_message(signed, now)
        except InvalidMessage as error:
            membership.counts["undecodable"] += 1
            session.services.traffic.refused(Refusal.UNDECODABLE)
            log.debug("dropped a group message from %s: %s", signed.author.short, error)
            return
        heard: Heard | RecordVerdict = Heard.TAKEN
        if isinstance(message, GroupRecord):
            heard = self._on_record(message)
        elif isinstance(message, Heartbeat):
            heard = membership.on_heartbeat(message, now)
            if heard is Heard.TAKEN:
                session.services.stack.remember_addrs(message.stamp.author, message.addrs)
                listed = None if message.heard is None else frozenset(author.raw for author in message.heard)
                session.relaying.declare(message.stamp.author.raw, listed, time.monotonic())
        elif isinstance(message, Announce):
            heard = self._on_announce(message, now)
        elif isinstance(message, Goodbye):
            heard = membership.on_goodbye(message, now)
        elif isinstance(message, SplitNotice):
            heard = membership.on_split(message, now)
            if heard is Heard.TAKEN:
                follow_split(session, message)
        elif isinstance(message, MergeOffer):
            heard = membership.on_merge_offer(message, now)
        refusal = REFUSALS.get(heard)
        if refusal is not None:
            session.services.traffic.refused(refusal)
        session.wake()

    def _on_record(self, record: GroupRecord) -> RecordVerdict:
        session = self._session
        membership, services = session.membership, session.services
        before = membership.record
        verdict = membership.on_record(record, services.clock())
        if verdict in REPORTED and membership.counts[verdict.value] == 1:  # the first of each kind
            services.events.emit(
                "record_refused", group=session.group_id, signer=str(record.leader), reason=verdict.value
            )
        if membership.record is not before:
            for member in record.members:
                services.stack.remember_addrs(member.peer_id, member.addrs)
        return verdict

    def _on_announce(self, announce: Announce, now: float) -> Heard:
        session = self._session
        number = announce.round
        heard = session.membership.on_announce(
            announce.stamp, announce.group_id, number, announce.base_hash, now
        )
        if heard is Heard.TAKEN and session.round <= number < session.round + ROUNDS_BUFFERED:
            self._announced.setdefault(number, {}).setdefault(announce.stamp.author, announce)
        return heard
