"""What arrives on a group's topic, decoded once at the edge and handed to whoever decides on it.

Records, heartbeats, goodbyes, splits and merge offers go to the membership state machine
(policy/membership.py); update announcements of the current round and the next two are kept for the
round (node/round.py), at most one per listed member and round. The relay check runs inside
GossipSub's validator: what does not decode or is outside the freshness window is not passed on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mycelium.errors import InvalidMessage
from mycelium.net.messages import decode_group_message
from mycelium.net.signing import Signed
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
            log.debug("dropped a group message from %s: %s", signed.author.short, error)
            return
        if isinstance(message, GroupRecord):
            self._on_record(message)
        elif isinstance(message, Heartbeat):
            if membership.on_heartbeat(message, now) is Heard.TAKEN:
                session.services.stack.remember_addrs(message.stamp.author, message.addrs)
        elif isinstance(message, Announce):
            self._on_announce(message, now)
        elif isinstance(message, Goodbye):
            membership.on_goodbye(message, now)
        elif isinstance(message, SplitNotice):
            if membership.on_split(message, now) is Heard.TAKEN:
                follow_split(session, message)
        elif isinstance(message, MergeOffer):
            membership.on_merge_offer(message, now)
        session.wake()

    def _on_record(self, record: GroupRecord) -> None:
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

    def _on_announce(self, announce: Announce, now: float) -> None:
        session = self._session
        number = announce.round
        heard = session.membership.on_announce(announce.stamp, announce.group_id, number, now)
        if heard is Heard.TAKEN and session.round <= number < session.round + ROUNDS_BUFFERED:
            self._announced.setdefault(number, {}).setdefault(announce.stamp.author, announce)
