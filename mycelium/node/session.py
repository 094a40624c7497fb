"""One membership in one group, from entering it to leaving it: the trio shell around `Membership`.

Inside a session's nursery:
- the topic task decodes group-topic messages (net/messages.py) and feeds them to the membership
  state machine (policy/membership.py) or, for update announcements, to the round in flight;
- the heartbeat task tells the group we are alive, our round, our model's hash and record version;
- the upkeep task (node/upkeep.py) carries out what `Membership.tick` decides: write or take over
  the record, re-check the DHT, offer a merge, rejoin, give the group up;
- the watchdog logs `stalled` and restarts a round whose phase has not moved past its bound.
The round loop runs rounds (node/round.py) one after another and applies each `RoundResult`, asking
`between_rounds` before each whether the node wants to stop or move. The session ends with an
`Outcome` that says why.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

import numpy as np
import trio

from mycelium.learn import Weights
from mycelium.net.gossip import Topic, group_topic, run_topic
from mycelium.net.messages import GROUP_KINDS
from mycelium.node import checkpoint
from mycelium.node.inbox import GroupInbox
from mycelium.node.outcome import Outcome
from mycelium.node.round import RoundProgress, RoundResult, RoundStart, best_of, fetch_vouched, run_round
from mycelium.node.services import Services
from mycelium.node.splitting import SplitWatch, split_if_due
from mycelium.node.trust import save_reputation
from mycelium.node.upkeep import RecordWriter, Upkeep
from mycelium.policy.catchup import CatchUp
from mycelium.policy.freshness import Freshness
from mycelium.policy.lifecycle import Ending
from mycelium.policy.membership import Membership, MembershipRules
from mycelium.policy.messages import Announce, Goodbye, Heartbeat
from mycelium.policy.peers import PeerId, in_peer_order
from mycelium.policy.records import GroupRecord, Metrics
from mycelium.policy.relaying import Relaying

log = logging.getLogger(__name__)

HISTORY = 500
GOODBYE_FLUSH = 0.3  # seconds
STALL_ALLOWANCE = 60.0  # beyond the round ceiling: training and evaluation of one round
FIRST_HEARTBEATS = 2  # heartbeat periods a joiner listens before its first catch-up


BetweenRounds = Callable[["GroupSession"], Awaitable[Outcome | None]]


def membership_rules(services: Services) -> MembershipRules:
    timing = services.config.timing
    return MembershipRules(
        expiry=timing.member_expiry,
        long_silence=3 * timing.member_expiry,
        republish=timing.republish,
        recheck=timing.republish,
    )


class GroupSession:
    def __init__(
        self,
        services: Services,
        record: GroupRecord,
        model: Weights,
        round_number: int,
        created: bool,
        advertise: bool | None = None,
    ) -> None:
        self.services = services
        now = services.clock()
        self.freshness: Freshness[PeerId] = Freshness()
        self.membership = Membership(
            services.peer_id, record, now, membership_rules(services), self.freshness
        )
        self.model = model
        self.model_hash = services.store_model(model)
        self.round = round_number
        self.created = created  # we created this group (a version 1 of ours)
        self.advertise = created if advertise is None else advertise  # nobody may know of it yet
        self.leave_when_alone = False  # set by nodes that may look for another group
        self.outcome: Outcome | None = None  # set when the session must end
        self.record_due = False  # the leader owes the group a version (after a round)
        self.inbox = GroupInbox(self)
        self.lateness: list[float] = []
        self.progress = RoundProgress(round=round_number)
        self.accuracy = math.nan
        self.loss = math.nan
        self.history: list[tuple[int, float, float]] = []  # (round, accuracy, loss), bounded
        self.rounds_per_minute = 0.0
        self.admission = trio.Lock()
        self.split_watch = SplitWatch()
        self.writer = RecordWriter(self)
        self.last_result: RoundResult | None = None  # its contributions seed a split's halves
        self._news = trio.Event()
        self._round_scope: trio.CancelScope | None = None
        self.background: trio.Nursery  # the session's nursery, once it runs (DHT writes go there)
        self._next_round_at = 0.0
        self.relaying = Relaying(services.config.timing.heartbeat)  # whom we and the others hear directly
        self.topic = Topic(
            group_topic(record.group_id),
            services.stack.pubsub,
            services.key_pair,
            services.traffic,
            GROUP_KINDS,
            relay=self.inbox.relay,
            relaying=self.relaying,
        )

    # --- what the round and the dashboard read ----------------------------------------------------

    @property
    def group_id(self) -> str:
        return self.membership.group_id

    @property
    def record(self) -> GroupRecord:
        return self.membership.record

    def live(self) -> frozenset[PeerId]:
        return self.membership.live(self.services.clock())

    def moved_on(self, round_number: int) -> bool:
        return self.membership.group_moved_on(round_number, self.services.clock())

    def announces(self, round_number: int) -> dict[PeerId, Announce]:
        return self.inbox.announces(round_number)

    def interrupted(self) -> bool:
        return self.outcome is not None or self.membership.paused

    async def news(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await self._news.wait()

    async def publish(self, data: bytes) -> None:
        await self.services.publish(self.topic, data)

    def topic_peers(self) -> int:
        return self.topic.peers()

    def metrics(self) -> Metrics:
        return Metrics(
            accuracy=self.accuracy if np.isfinite(self.accuracy) else 0.0,
            loss=self.loss if np.isfinite(self.loss) else 0.0,
            samples=len(self.services.learner.data.train),
            rounds_per_minute=self.rounds_per_minute,
        )

    def refused(self) -> dict[str, int]:
        """What this session dropped, by reason (stale, replayed, forged, not a member, ...)."""
        counts = self.membership.counts + self.freshness.dropped
        return dict(
            sorted((reason, count) for reason, count in counts.items() if reason not in ("adopted", "same"))
        )

    def end(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
        self.wake()

    def wake(self) -> None:
        self._news.set()
        self._news = trio.Event()

    # --- background tasks -------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        services = self.services
        while True:
            services.transfer.store.pin("heartbeat", self.model_hash)
            beat = heartbeat_of(self)
            if services.attack is not None:
                beat = services.attack.heartbeat(beat)
            await self.publish(services.seal(beat))
            await trio.sleep(services.config.timing.heartbeat)

    async def _watchdog(self) -> None:
        """Restart a round whose phase has not moved for longer than the round ceiling allows."""
        bound = self.services.config.timing.rounds.ceiling + STALL_ALLOWANCE
        while True:
            await trio.sleep(min(10.0, bound / 4))
            stuck_for = time.monotonic() - self.progress.since
            if stuck_for > bound and self.progress.phase not in ("done", "waiting", "holding"):
                self.services.events.emit(
                    "stalled",
                    group=self.group_id,
                    round=self.progress.round,
                    phase=self.progress.phase,
                    seconds=round(stuck_for, 1),
                )
                self.progress.enter("restarting")
                if self._round_scope is not None:
                    self._round_scope.cancel()

    # --- the session ------------------------------------------------------------------------------

    async def run(self, between_rounds: BetweenRounds) -> Outcome:
        """Take part in the group until the node leaves it; always says goodbye (bounded)."""
        outcome = Outcome(Ending.SHUTDOWN)
        said_goodbye = False
        try:
            async with trio.open_nursery() as nursery:
                self.background = nursery
                ready = trio.Event()
                nursery.start_soon(run_topic, self.topic, self.inbox.on_signed, ready, self.services.peer_id)
                await ready.wait()
                nursery.start_soon(self._heartbeats)
                nursery.start_soon(Upkeep(self).run)
                nursery.start_soon(self._watchdog)
                if len(self.record.members) > 1 and not self.created:
                    await self.wait_for_heartbeats(FIRST_HEARTBEATS * self.services.config.timing.heartbeat)
                outcome = await self._round_loop(between_rounds)
                # while still subscribed: once unsubscribed, the goodbye may reach nobody
                await self._say_goodbye(outcome)
                said_goodbye = True
                nursery.cancel_scope.cancel()
        finally:
            if not said_goodbye:  # stopped from outside (shutdown): the topic may be gone already
                await self._say_goodbye(outcome)
        return outcome

    async def wait_for_heartbeats(self, timeout: float) -> None:
        """Listen a moment for the others (a joiner learns who is where before catching up): until
        it has heard enough of them to make a majority, or `timeout`."""
        with trio.move_on_after(timeout):
            while True:
                live = self.live()
                others = live - {self.services.peer_id}
                heard = sum(1 for p in others if self.membership.view_of(p).round >= 0)
                if heard >= min(len(others), len(live) // 2 + 1):
                    break
                await self.news(timeout)
        await catch_up(self)

    async def wait_for_members(self, count: int, timeout: float) -> None:
        """Hold the first round until `count` members are live (bounded by `timeout`)."""
        with trio.move_on_after(timeout):
            while len(self.live()) < min(count, self.record.capacity):
                await self.news(1.0)
        await catch_up(self)

    async def _say_goodbye(self, outcome: Outcome) -> None:
        if outcome.ending in (Ending.EVICTED, Ending.MERGE):
            return  # the group no longer counts us
        services = self.services
        goodbye = Goodbye(services.stamp(), self.group_id, outcome.ending.value)
        with trio.CancelScope(shield=True), trio.move_on_after(1.5):
            await self.publish(services.seal(goodbye))
            # py-libp2p's gossipsub queues the message for a writer task: give it a moment
            # before the caller tears the host down
            await trio.sleep(GOODBYE_FLUSH)

    async def _round_loop(self, between_rounds: BetweenRounds) -> Outcome:
        timing = self.services.config.timing
        while True:
            if self.outcome is not None:
                return self.outcome
            if self.services.config.rounds and self.membership.run_is_over(self.services.clock()):
                return Outcome(Ending.FINISHED)
            if self.membership.paused:  # dropped, or our part lost a merge: wait to be let in again
                self.progress.enter("rejoining")
                await self.news(1.0)
                continue
            outcome = None
            with trio.CancelScope() as self._round_scope:
                self.progress.enter("between rounds")
                outcome = await between_rounds(self)
            if outcome is not None:
                return outcome
            self.progress.enter("waiting")
            await trio.sleep_until(self._next_round_at)
            self._next_round_at = trio.current_time() + timing.round_interval
            with trio.CancelScope() as self._round_scope:
                await catch_up(self)
                traffic = self.services.traffic
                moved_before = (traffic.bytes_in, traffic.bytes_out)
                start = RoundStart(self.round, self.model, self.model_hash, self.live())
                result = await run_round(self.services, self, start, self.lateness, self.progress)
                if result is not None:
                    await self._apply(result, start, moved_before)
            self._round_scope = None

    async def _apply(self, result: RoundResult, start: RoundStart, moved_before: tuple[int, int]) -> None:
        services = self.services
        self.last_result = result
        self.model, self.model_hash, self.round = result.model, result.model_hash, result.number + 1
        self.inbox.keep_from(self.round)
        self.lateness = [*self.lateness[-19:], result.lateness]
        self.accuracy, self.loss = result.accuracy, result.loss
        self.history = [*self.history[-(HISTORY - 1) :], (result.number, result.accuracy, result.loss)]
        self.rounds_per_minute = 60.0 / result.wall_s if result.wall_s > 0 else 0.0
        services.events.emit("round", **round_event(self, result, moved_before))
        self.progress.enter("done")
        self._remove_distrusted()
        save_reputation(services.config.data_dir, services.reputation)
        if self.membership.is_leader:
            self.record_due = True
            await split_if_due(self, result, start)
        self.wake()
        blob = services.transfer.store.get(self.model_hash)
        if blob is not None:
            checkpoint.save(services.config.data_dir, self.record, self.round, blob)

    def _remove_distrusted(self) -> None:
        """As leader, remove members our reputation book has held below its floor for long enough."""
        membership, book, now = self.membership, self.services.reputation, self.services.clock()
        if not membership.is_leader:
            return
        for peer in in_peer_order(
            membership.listed - membership.distrusted_now(now) - {self.services.peer_id}
        ):
            if book.should_evict(peer):
                membership.distrust(peer, now)
                self.record_due = True
                self.services.events.emit(
                    "removed_member",
                    group=self.group_id,
                    round=self.round - 1,
                    peer=str(peer),
                    reason=f"reputation {book.of(peer):.2f} below the floor {book.rules.floor} for "
                    f"{book.book[peer].rounds_below} rounds",
                )

    async def admitted_model(self, record: GroupRecord) -> Weights | None:
        """The model a version that let us in again names (None: ours already, or not to be had).

        We train on from it and its round, forward or back: on the losing side of a merge our own
        round numbers are not the group's.
        """
        if not record.model_hash or record.model_hash == self.model_hash:
            return None
        others = [p for p in record.member_ids if p not in (record.leader, self.services.peer_id)]
        target = CatchUp(record.round, record.model_hash, (record.leader, *others), "admission")
        return await fetch_vouched(self.services, target, self.progress)

    def adopt(self, model: Weights | None, round_number: int, vouched_by: str) -> None:
        """Take `round_number`, with `model` (None: keep ours)."""
        self.services.events.emit(
            "caught_up",
            group=self.group_id,
            from_round=self.round,
            to_round=round_number,
            vouched_by=vouched_by,
            model="kept" if model is None else "adopted",
        )
        if model is not None:
            self.model, self.model_hash = model, self.services.store_model(model)
        self.round = round_number
        self.inbox.keep_from(self.round)


async def catch_up(session: GroupSession) -> None:
    """Adopt the round and model the group vouches for, when it is ahead of us; when the members
    ahead hold different models, their round and the best of their models for our data
    (policy/catchup.py)."""
    services, membership, now = session.services, session.membership, session.services.clock()
    target = membership.catch_up_target(session.round, now)
    if target is not None:
        model = await fetch_vouched(services, target, session.progress)
        if model is not None:
            session.adopt(model, target.round, target.vouched_by)
        return
    candidates = membership.diverged_targets(session.round, now)
    if candidates:
        model = await best_of(services, candidates, session.progress)
        session.adopt(model, candidates[0].round, "majority round")


def heartbeat_of(session: GroupSession) -> Heartbeat:
    """What we tell the group every heartbeat: alive, our round, model and record, whom we hear."""
    services = session.services
    return Heartbeat(
        stamp=services.stamp(),
        group_id=session.group_id,
        round=session.round,
        model_hash=session.model_hash,
        accuracy=session.metrics().accuracy,
        addrs=services.addrs(),
        record_version=session.record.version,
        record_digest=session.record.digest,
        bytes_in=services.traffic.bytes_in,
        bytes_out=services.traffic.bytes_out,
        heard=frozenset(map(PeerId, session.relaying.hears(time.monotonic()))),
    )


def round_event(
    session: GroupSession, result: RoundResult, moved_before: tuple[int, int]
) -> dict[str, object]:
    """The fields of a `round` event (README, events)."""
    services, record = session.services, session.record
    return {
        "group": session.group_id,
        "round": result.number,
        "members": len(session.live()),
        "listed": len(record.members),
        "leader": str(record.leader),
        "record_version": record.version,
        "record_digest": record.digest.hex()[:16],
        "contributors": len(result.contributions),
        "left_out": len(result.contributions) - len(result.trusted),  # distrusted (policy/trust.py)
        "peers": len(services.stack.connected_peers()),
        "closed": result.closed.value,
        "accuracy": round(result.accuracy, 4),
        "loss": round(result.loss, 4),
        "local_accuracy": round(result.local_accuracy, 4),
        "train_loss": round(result.train_loss, 4),
        "bytes_in": services.traffic.bytes_in - moved_before[0],
        "bytes_out": services.traffic.bytes_out - moved_before[1],
        "update_bytes": result.update_bytes,
        "wall_s": round(result.wall_s, 3),
        "phase_s": {phase: round(seconds, 3) for phase, seconds in result.phase_s.items()},
        "model_hash": session.model_hash.hex()[:16],
    }
