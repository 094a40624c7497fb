"""Carrying out what the membership state machine decides, and writing the versions a leader owes.

`Upkeep.run` asks `Membership.tick` every half heartbeat and carries out its `Decision`: write the
next version (as leader, or taking over from a silent one), re-read the record from the DHT and dial
silent members, score a diverged part of the group and offer a merge, or end the session (rejoin,
dissolve). `RecordWriter` is the one place a version is built, signed and spread: the group topic at
once; the discovery topic and the DHT when the leader or members changed, or every `republish`
seconds (policy/listing.py; the DHT in the background, one write at a time); and the checkpoint, so
that a restart continues the same chain of versions.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from mycelium.errors import InvalidMessage, JoinRefused, TransferError
from mycelium.node import checkpoint
from mycelium.node.joining import ADMISSION_DEADLINE, entry_points, request_admission
from mycelium.node.outcome import Outcome
from mycelium.policy.lifecycle import Ending
from mycelium.policy.listing import Listing
from mycelium.policy.membership import Action, Decision
from mycelium.policy.messages import MergeOffer
from mycelium.policy.peers import PeerId, in_peer_order
from mycelium.policy.records import GroupRecord

if TYPE_CHECKING:
    from mycelium.node.session import GroupSession

log = logging.getLogger(__name__)

RECHECK_TIMEOUT = 8.0
REJOIN_ATTEMPTS = 3  # failed in-session rejoins before the session ends (the node then joins from outside)
DIALS_PER_RECHECK = 8
MEMBER_DIALS = 4  # dials started per tick to listed members we are not connected to
MEMBER_REDIAL = 10.0  # seconds before a member that we could not reach is dialled again
MERGE_FETCH_DEADLINE = 30.0

_REJOIN_ENDINGS = {"evicted": Ending.EVICTED, "merge": Ending.MERGE}


class RecordWriter:
    def __init__(self, session: GroupSession) -> None:
        self._session = session
        period = session.services.config.timing.republish
        self._in_dht = Listing(period)
        self._on_discovery = Listing(period)
        self._last_index = -1e18
        self._dht_pending = False
        self._dht_busy = False

    def write(
        self, members: frozenset[PeerId], addrs: dict[PeerId, tuple[str, ...]] | None = None
    ) -> GroupRecord:
        """Build, sign and adopt the next version, led by us (no await: versions never race)."""
        session = self._session
        services, membership = session.services, session.membership
        now = services.clock()
        record = membership.record.successor(
            now,
            services.config.timing.record_ttl,
            leader=services.peer_id,
            members=membership.member_entries(members, now, addrs),
            round=session.round,
            metrics=session.metrics(),
            model_hash=session.model_hash,
        )
        signed = services.sign_record(record)
        membership.adopt_own(signed, now)
        session.record_due = False
        services.transfer.store.pin("record", session.model_hash)
        blob = services.transfer.store.get(session.model_hash)
        if blob is not None:
            checkpoint.save(services.config.data_dir, signed, session.round, blob)
        return signed

    async def spread(self, record: GroupRecord) -> None:
        """Publish a version we wrote on the group topic; on the discovery topic and in the DHT when
        its leader or members changed, or every `republish` seconds (policy/listing.py; the DHT
        write one at a time, in the background). The model a copy names stays servable."""
        session = self._session
        services = session.services
        await session.publish(record.signed)
        now = services.clock()
        if self._on_discovery.due(record, now):
            self._on_discovery.sent(record, now)
            services.transfer.store.pin("discovery", record.model_hash)
            await services.publish_discovery(record)
        if self._in_dht.due(record, now):
            self._dht_pending = True
            if not self._dht_busy:
                self._dht_busy = True
                session.background.start_soon(self._write_dht)

    async def _write_dht(self) -> None:
        services, timing = self._session.services, self._session.services.config.timing
        try:
            while self._dht_pending:
                self._dht_pending = False
                record = self._session.membership.record
                if record.leader != services.peer_id:
                    return  # no longer ours to write
                services.transfer.store.pin("dht", record.model_hash)
                await services.registry.put_group(record)
                self._in_dht.sent(record, services.clock())
                if services.clock() - self._last_index >= timing.index_refresh:
                    await services.registry.advertise(record.task, [record.group_id])
                    self._last_index = services.clock()
        finally:
            self._dht_busy = False


class Upkeep:
    def __init__(self, session: GroupSession) -> None:
        self._session = session
        self._busy: set[Action] = set()  # slow actions (DHT reads, joins, model pulls) run in the background
        self._rejoin_failures = 0
        self._dialled: dict[PeerId, float] = {}  # members we dialled, and when (listed members only)

    async def run(self) -> None:
        session = self._session
        services, membership = session.services, session.membership
        period = services.config.timing.heartbeat / 2
        while session.outcome is None:
            decision = membership.tick(services.clock())
            if decision.action is Action.NONE and session.record_due and membership.is_leader:
                decision = Decision(Action.WRITE_RECORD, members=membership.members_to_list(services.clock()))
            await self._carry_out(decision)
            self._connect_members()
            await trio.sleep(period)

    def _connect_members(self) -> None:
        """Dial the listed members we are not connected to, in the background: the group's gossip
        mesh and the pulls of a round run over direct connections, and nothing else makes them
        (seen with a connection floor of 16 in a 30-peer mesh: a member connected to 4 peers heard
        3 of 10 updates in round 0)."""
        session = self._session
        services, membership = session.services, session.membership
        now = services.clock()
        listed = membership.listed
        self._dialled = {p: t for p, t in self._dialled.items() if p in listed}
        due = [
            peer
            for peer in in_peer_order(listed)
            if peer != services.peer_id
            and not services.stack.is_connected(peer)
            and now - self._dialled.get(peer, -1e18) >= MEMBER_REDIAL
        ]
        for peer in due[:MEMBER_DIALS]:
            self._dialled[peer] = now
            session.background.start_soon(services.stack.dial, peer, membership.addrs_of(peer))

    async def _carry_out(self, decision: Decision) -> None:
        session = self._session
        services = session.services
        action = decision.action
        if action in (Action.WRITE_RECORD, Action.TAKE_OVER):
            took_over_from = session.membership.leader
            record = session.writer.write(decision.members)
            if action is Action.TAKE_OVER:
                services.events.emit(
                    "took_over",
                    group=record.group_id,
                    previous_leader=str(took_over_from),
                    members=len(record.members),
                    version=record.version,
                )
            await session.writer.spread(record)
        elif action in (Action.RECHECK, Action.OFFER_MERGE, Action.REJOIN) and action not in self._busy:
            self._busy.add(action)
            session.background.start_soon(self._in_background, decision)
        elif action is Action.DISSOLVED and session.leave_when_alone:
            session.end(Outcome(Ending.DISSOLVED))

    async def _in_background(self, decision: Decision) -> None:
        try:
            if decision.action is Action.RECHECK:
                await self._recheck(decision)
            elif decision.action is Action.REJOIN and decision.record is not None:
                await self._rejoin(decision.record, decision.reason)
            elif decision.record is not None:
                await self._offer_merge(decision.record)
        finally:
            self._busy.discard(decision.action)

    async def _rejoin(self, through: GroupRecord, reason: str) -> None:
        """Ask a member of `through` to let us back in, staying subscribed to the group's topic (a
        new subscription would sit out GossipSub's backoff and hear nothing for up to a minute)."""
        session = self._session
        services, membership = session.services, session.membership
        services.events.emit("rejoining", group=session.group_id, reason=reason)
        points = entry_points(through, services.peer_id)
        try:
            with trio.fail_after(ADMISSION_DEADLINE):
                record = await request_admission(services, session.group_id, points)
        except (JoinRefused, trio.TooSlowError) as error:
            self._rejoin_failures += 1
            log.info("rejoining %s (%s) failed: %s", session.group_id, reason, error)
            final = isinstance(error, JoinRefused) and error.final
            if final or self._rejoin_failures >= REJOIN_ATTEMPTS:  # the node looks for a way in from outside
                session.end(Outcome(_REJOIN_ENDINGS.get(reason, Ending.REJOIN), record=through))
            return
        self._rejoin_failures = 0
        for member in record.members:
            services.stack.remember_addrs(member.peer_id, member.addrs)
        model = await session.admitted_model(record)
        membership.readmitted(record, services.clock())  # no await from here: rounds resume on both at once
        if model is not None:
            session.adopt(model, record.round, "admission")
        services.events.emit(
            "rejoined",
            group=session.group_id,
            reason=reason,
            version=record.version,
            members=len(record.members),
        )

    async def _recheck(self, decision: Decision) -> None:
        """Re-read our record from the DHT and dial the members we do not hear."""
        session = self._session
        services, membership = session.services, session.membership
        found = None
        with trio.move_on_after(RECHECK_TIMEOUT):
            found = await services.registry.get_group(session.group_id, timeout=RECHECK_TIMEOUT)
        verdict = membership.rechecked(found, services.clock())
        reached: list[PeerId] = []

        async def dial(peer: PeerId) -> None:
            # we do not hear it: if we are connected anyway, that connection may be wedged
            if await services.stack.dial(peer, membership.addrs_of(peer), afresh=True):
                reached.append(peer)

        with trio.move_on_after(RECHECK_TIMEOUT):
            async with trio.open_nursery() as dials:
                for peer in decision.peers[:DIALS_PER_RECHECK]:
                    dials.start_soon(dial, peer)
        services.events.emit(
            "rechecked",
            group=session.group_id,
            reason=decision.reason,
            found_version=found.version if found is not None else None,
            verdict=verdict.value if verdict is not None else None,
            dialled=len(decision.peers[:DIALS_PER_RECHECK]),
            reached=len(reached),
        )

    async def _offer_merge(self, other: GroupRecord) -> None:
        """Score both parts' models on our validation data and tell both parts (see membership.py)."""
        session = self._session
        services, membership = session.services, session.membership
        learner = services.learner
        own = await trio.to_thread.run_sync(learner.evaluate, learner.data.validation, session.model)
        other_score = 0.0
        if other.model_hash:
            try:
                model = await services.fetch_group_model(other, deadline=MERGE_FETCH_DEADLINE)
            except (TransferError, InvalidMessage) as error:
                log.info("could not score the other part's model (asked again next tick): %s", error)
                return  # an offer needs both scores: a model we could not pull is not a model that scores 0
            scored = await trio.to_thread.run_sync(learner.evaluate, learner.data.validation, model)
            other_score = scored.expected_accuracy
        now = services.clock()
        offer = MergeOffer(
            stamp=services.stamp(),
            group_id=session.group_id,
            part=membership.record,
            other_digest=other.digest,
            own_score=own.expected_accuracy,
            other_score=other_score,
            live_members=membership.live_following(now),
        )
        await session.publish(services.seal(offer))
        membership.offered(offer, now)
        services.events.emit(
            "merge_offer",
            group=session.group_id,
            other_leader=str(other.leader),
            own_score=round(own.expected_accuracy, 4),
            other_score=round(other_score, 4),
            live=offer.live_members,
        )
