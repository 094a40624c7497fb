"""One membership in one group: heartbeats, membership records, admissions, and learning rounds.

A `GroupSession` lives from joining (or creating) a group until leaving it. Inside it:
- the topic task turns gossip into calls of `_on_message` (non-blocking bookkeeping only);
- the heartbeat task tells the group we are alive, which round we are in and our model's hash;
- the upkeep task drops silent members and, on the leader, rewrites the group record
  (topic + DHT + task index) when membership changes or it is due;
- the round loop trains, announces, collects, aggregates and evaluates, asking `between_rounds`
  before each round whether the node wants to stop or move (migration, split, end of run).
Decisions come from mycelium.policy; this module carries them out.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import trio
from libp2p.peer.id import ID

from mycelium.context import NodeContext
from mycelium.errors import InvalidMessage, TransferError
from mycelium.learn import Weights
from mycelium.learn import codec as tensor_codec
from mycelium.learn.aggregate import aggregate, get_aggregator
from mycelium.learn.train import update_vector
from mycelium.net.gossip import Topic, group_topic, run_topic
from mycelium.net.records import (
    GroupRecord,
    Member,
    Metrics,
    Policy,
    group_id_for,
    invite_problem,
    record_from_signed,
)
from mycelium.net.signing import Kind, Signed
from mycelium.net.transfer import content_hash
from mycelium.policy.admission import JoinCase, Verdict, decide_join, in_peer_order, leader_of
from mycelium.policy.rounds import Close, close_decision, wait_limit
from mycelium.policy.split import SplitRules, SplitState, split_step
from mycelium.proto import mycelium_pb2 as pb

log = logging.getLogger(__name__)

GROUP_KINDS = frozenset(
    {Kind.MEMBER_HEARTBEAT, Kind.UPDATE_ANNOUNCE, Kind.GROUP_RECORD, Kind.MEMBER_LEFT, Kind.GROUP_SPLIT}
)
ROUNDS_BUFFERED = 3  # announcements kept for the current round and the next two
POLL = 0.25
HISTORY = 500
DISSOLVE_SILENCE = 3  # member expiries
GOODBYE_FLUSH = 0.3  # seconds
MAX_CLASSES = 1000


@dataclass
class MemberView:
    last_seen: float
    addrs: tuple[str, ...] = ()
    round: int = -1
    model_hash: bytes = b""
    accuracy: float = float("nan")


@dataclass(frozen=True)
class SplitPlan:
    """Our half of a split group: the new group every member of the half builds identically."""

    group_id: str
    creator: ID
    nonce: bytes
    members: tuple[ID, ...]
    addrs: dict[ID, tuple[str, ...]]
    round: int
    model: Weights
    sent_at: float
    policy: Policy
    capacity: int


@dataclass(frozen=True)
class Outcome:
    reason: str  # finished | migrate | split | evicted | dissolved | shutdown
    target: str | None = None
    gain: float = 0.0
    split: SplitPlan | None = None


@dataclass
class RoundProgress:
    """What the dashboard shows of the round in flight."""

    round: int = 0
    phase: str = "starting"
    announced: set[ID] = field(default_factory=set)
    contributed: set[ID] = field(default_factory=set)


BetweenRounds = Callable[["GroupSession"], Awaitable[Outcome | None]]


class GroupSession:
    def __init__(
        self, ctx: NodeContext, record: GroupRecord, model: Weights, round_number: int, created: bool
    ) -> None:
        self.ctx = ctx
        self.record = record
        self.model = model
        self.model_hash = ctx.transfer.store.put(self._encode_model(model))
        self.round = round_number
        self.created = created
        now = ctx.clock()
        self.members: dict[ID, MemberView] = {m.peer_id: MemberView(last_seen=now) for m in record.members}
        for member in record.members:
            self._learn_addrs(member.peer_id, self.members[member.peer_id], member.addrs)
        self.members[ctx.peer_id] = MemberView(last_seen=now, addrs=tuple(ctx.listen_addrs()))
        self.joined_at: dict[ID, float] = {m.peer_id: m.joined_at for m in record.members}
        self.announces: dict[int, dict[ID, pb.UpdateAnnounce]] = {}
        self.contributions: dict[ID, tuple[Weights, int]] = {}
        self.contributions_round = -1
        self.bases: dict[ID, bytes] = {}  # the model each contribution was trained from
        self.label_counts: dict[ID, tuple[int, ...]] = {}  # each contributor's class counts
        self.split_state: SplitState[ID] = SplitState()
        self.split_plan: SplitPlan | None = None
        self.departed: set[ID] = set()  # members that left with the other half of a split
        self.gone: set[ID] = set()  # members that said goodbye (MemberLeft)
        self.finished: set[ID] = set()  # ... because their run of --rounds was over
        self.peak_live = 1
        self.leave_when_alone = False  # set by nodes that may look for another group
        self.needs_advertising = False  # a group we lead that nobody knows of yet
        self._next_round_at = 0.0  # trio clock; --round-interval paces rounds
        self.lateness: list[float] = []
        self.progress = RoundProgress(round=round_number)
        self.accuracy = float("nan")
        self.loss = float("nan")
        self.history: list[tuple[int, float, float]] = []  # (round, accuracy, loss), bounded
        self._wake = trio.Event()
        self._evicted = False
        self._record_dirty = True
        self._last_dht_put = 0.0
        self._last_index = 0.0
        self._dht_busy = False
        self._admission = trio.Lock()
        self._round_started_at = now
        self._rounds_per_minute = 0.0
        self.topic = Topic(
            group_topic(record.group_id), ctx.stack.pubsub, ctx.key_pair, ctx.traffic, GROUP_KINDS
        )

    # --- views ----------------------------------------------------------------------------------

    @property
    def group_id(self) -> str:
        return self.record.group_id

    def live_members(self, silence: float | None = None) -> frozenset[ID]:
        """Members heard from within `silence` seconds (default: the member expiry), and us."""
        horizon = self.ctx.clock() - (self.ctx.config.timing.member_expiry if silence is None else silence)
        listed = (self.record.member_ids - self.departed) | {self.ctx.peer_id}
        return frozenset(
            peer
            for peer in listed
            if peer == self.ctx.peer_id or self.members.get(peer, MemberView(0)).last_seen >= horizon
        )

    def leader(self) -> ID:
        return leader_of(self.live_members())

    def is_leader(self) -> bool:
        return self.leader() == self.ctx.peer_id

    # --- messages -------------------------------------------------------------------------------

    def _on_message(self, signed: Signed) -> None:
        author = signed.author
        try:
            if signed.kind == Kind.GROUP_RECORD:
                self._on_record(record_from_signed(signed, self.ctx.clock()))
                return
            if author not in self.record.member_ids:
                return  # not admitted (yet): heartbeats and updates of outsiders are ignored
            view = self.members.setdefault(author, MemberView(last_seen=0.0))
            view.last_seen = self.ctx.clock()
            if signed.kind == Kind.MEMBER_HEARTBEAT:
                beat = signed.decode(pb.MemberHeartbeat)
                if beat.group_id == self.group_id:
                    view.round, view.model_hash = beat.round, beat.model_hash
                    view.accuracy = beat.metrics.accuracy
                    self._learn_addrs(author, view, tuple(beat.addrs[:4]))
            elif signed.kind == Kind.UPDATE_ANNOUNCE:
                self._on_announce(author, signed.decode(pb.UpdateAnnounce))
            elif signed.kind == Kind.GROUP_SPLIT:
                split = signed.decode(pb.GroupSplit)
                if split.group_id == self.group_id and author == self.leader():
                    self._apply_split(split)
            elif signed.kind == Kind.MEMBER_LEFT:
                left = signed.decode(pb.MemberLeft)
                if left.group_id == self.group_id:
                    view.last_seen = 0.0
                    self.gone.add(author)
                    if left.reason == "finished":
                        self.finished.add(author)
                    self._record_dirty = True
        except InvalidMessage as error:
            log.debug("ignored %s from %s: %s", Kind.Name(signed.kind), author, error)
        self._wake.set()

    def _on_record(self, record: GroupRecord) -> None:
        if record.group_id != self.group_id:
            return
        if (record.updated_at, record.version) <= (self.record.updated_at, self.record.version):
            return
        self.record = record
        now = self.ctx.clock()
        for member in record.members:
            view = self.members.setdefault(member.peer_id, MemberView(last_seen=now))
            if not view.addrs:
                self._learn_addrs(member.peer_id, view, member.addrs)
            self.joined_at.setdefault(member.peer_id, member.joined_at)
        if self.ctx.peer_id not in record.member_ids:
            self._evicted = True

    def _learn_addrs(self, peer: ID, view: MemberView, addrs: tuple[str, ...]) -> None:
        if addrs and addrs != view.addrs and peer != self.ctx.peer_id:
            view.addrs = addrs
            self.ctx.remember_addrs(peer, addrs)

    def _on_announce(self, author: ID, announce: pb.UpdateAnnounce) -> None:
        if (
            announce.group_id != self.group_id
            or not self.round <= announce.round < self.round + ROUNDS_BUFFERED
        ):
            return
        self.announces.setdefault(announce.round, {})[author] = announce
        view = self.members[author]
        view.round = max(view.round, announce.round)

    # --- background tasks -----------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            self.ctx.transfer.store.pin("heartbeat", self.model_hash)
            beat = pb.MemberHeartbeat(
                group_id=self.group_id,
                round=self.round,
                sent_at=self.ctx.clock(),
                metrics=self._metrics().to_proto(),
                model_hash=self.model_hash,
                addrs=self.ctx.listen_addrs()[:4],
            )
            await self._publish(Kind.MEMBER_HEARTBEAT, beat)
            await trio.sleep(self.ctx.config.timing.heartbeat)

    async def _upkeep(self, nursery: trio.Nursery) -> None:
        timing = self.ctx.config.timing
        while True:
            now = self.ctx.clock()
            if self.is_leader():
                members = self._members_to_list()
                if set(self.record.member_ids) != set(members):
                    self._record_dirty = True
                if self._record_dirty or now - self.record.updated_at >= timing.republish:
                    await self._publish_record(members)
                if not self._dht_busy and now - self._last_dht_put >= timing.republish:
                    self._dht_busy = True
                    nursery.start_soon(self._write_dht, now - self._last_index >= timing.index_refresh)
            await trio.sleep(timing.heartbeat / 2)

    def _members_to_list(self) -> frozenset[ID]:
        """The members the leader writes into the record.

        Silent members are dropped only while we hear from a majority of the group: a node that
        hears few others is more likely cut off itself (starved of CPU, partitioned) than the last
        one alive, and must not evict everybody else (it would then also ignore their messages).
        Members silent for DISSOLVE_SILENCE expiries go anyway; members that said goodbye at once.
        """
        listed = (self.record.member_ids - self.departed - self.gone) | {self.ctx.peer_id}
        live = self.live_members()
        if 2 * len(live) > len(listed):
            return live
        long_silent = self.live_members(silence=DISSOLVE_SILENCE * self.ctx.config.timing.member_expiry)
        return frozenset(listed & long_silent)

    async def _publish_record(self, members: frozenset[ID]) -> None:
        now = self.ctx.clock()
        entries = tuple(
            Member(
                peer_id=peer,
                joined_at=self.joined_at.get(peer, now),
                last_seen=now if peer == self.ctx.peer_id else self.members[peer].last_seen,
                addrs=self.members[peer].addrs[:4],
            )
            for peer in in_peer_order(members)
        )
        self.record = self.record.successor(
            now,
            self.ctx.config.timing.record_ttl,
            members=entries,
            round=self.round,
            metrics=self._metrics(),
            model_hash=self.model_hash,
        )
        self._record_dirty = False
        self.ctx.transfer.store.pin("record", self.model_hash)
        await self._publish(Kind.GROUP_RECORD, self.record.to_proto())
        await self.ctx.publish_discovery(self.record)

    async def _write_dht(self, refresh_index: bool) -> None:
        try:
            await self.ctx.registry.put_group(self.record)
            self._last_dht_put = self.ctx.clock()
            if refresh_index:
                await self.ctx.registry.advertise(self.record.task, [self.group_id])
                self._last_index = self.ctx.clock()
        finally:
            self._dht_busy = False

    async def _publish(self, kind: int, message: object) -> None:
        try:
            with trio.move_on_after(5):
                await self.topic.publish(kind, message)
        except Exception as error:  # noqa: BLE001 - a failed publish is retried by the next tick
            log.debug("publish %s failed: %s", Kind.Name(kind), error)

    def _metrics(self) -> Metrics:
        accuracy = self.accuracy if np.isfinite(self.accuracy) else 0.0
        loss = self.loss if np.isfinite(self.loss) else 0.0
        return Metrics(
            accuracy=accuracy,
            loss=loss,
            samples=len(self.ctx.learner.data.train),
            rounds_per_minute=self._rounds_per_minute,
        )

    # --- admissions (called by the node's join handler) -----------------------------------------

    async def admit(self, remote: ID, request: pb.JoinRequest) -> pb.JoinResponse:
        async with self._admission:
            now = self.ctx.clock()
            listed = self._members_to_list()
            problem = None
            if request.invite:
                problem = invite_problem(request.invite, self.group_id, remote, listed, now)
            verdict = decide_join(
                JoinCase(
                    is_leader=self.is_leader(),
                    already_member=remote in self.record.member_ids,
                    fingerprint_matches=request.model_fingerprint == self.record.model_fingerprint,
                    invite_only=self.record.policy is Policy.INVITE,
                    invite_problem=problem,
                    invite_presented=bool(request.invite),
                    members=len(listed),
                    capacity=self.record.capacity,
                )
            )
            if verdict is Verdict.REDIRECT:
                leader = self.leader()
                return pb.JoinResponse(
                    status=pb.JoinResponse.REDIRECT,
                    reason=verdict.value,
                    leader=leader.to_bytes(),
                    leader_addrs=list(self.members[leader].addrs),
                )
            if verdict in (Verdict.ADMIT, Verdict.ALREADY_MEMBER):
                self.gone.discard(remote)
                self.departed.discard(remote)
                self.members[remote] = MemberView(last_seen=now)
                self._learn_addrs(remote, self.members[remote], tuple(request.addrs[:4]))
                self.joined_at.setdefault(remote, now)
                await self._publish_record(listed | {remote})
                return pb.JoinResponse(
                    status=pb.JoinResponse.ADMITTED, record=self.record.seal(self.ctx.key_pair)
                )
            status = pb.JoinResponse.FULL if verdict is Verdict.FULL else pb.JoinResponse.REFUSED
            reason = verdict.value + (f": {problem}" if verdict is Verdict.BAD_INVITE else "")
            return pb.JoinResponse(status=status, reason=reason)

    # --- the session ----------------------------------------------------------------------------

    async def run(self, between_rounds: BetweenRounds) -> Outcome:
        """Take part in the group until the node leaves it; always says goodbye (bounded)."""
        outcome = Outcome("shutdown")
        said_goodbye = False
        try:
            async with trio.open_nursery() as nursery:
                ready = trio.Event()
                nursery.start_soon(run_topic, self.topic, self._on_message, ready, self.ctx.peer_id)
                await ready.wait()
                nursery.start_soon(self._heartbeats)
                nursery.start_soon(self._upkeep, nursery)
                if len(self.record.members) > 1:
                    await self.catch_up(wait=2 * self.ctx.config.timing.heartbeat)
                outcome = await self._round_loop(between_rounds)
                # while still subscribed: once unsubscribed, the goodbye may reach nobody
                await self._say_goodbye(outcome)
                said_goodbye = True
                nursery.cancel_scope.cancel()
        finally:
            if not said_goodbye:  # stopped from outside (shutdown): the topic may be gone already
                await self._say_goodbye(outcome)
        return outcome

    async def _say_goodbye(self, outcome: Outcome) -> None:
        if outcome.reason != "evicted":
            left = pb.MemberLeft(group_id=self.group_id, sent_at=self.ctx.clock(), reason=outcome.reason)
            with trio.CancelScope(shield=True), trio.move_on_after(1.5):
                await self._publish(Kind.MEMBER_LEFT, left)
                # py-libp2p's gossipsub queues the message for a writer task: give it a moment
                # before the caller tears the host down
                await trio.sleep(GOODBYE_FLUSH)

    async def _round_loop(self, between_rounds: BetweenRounds) -> Outcome:
        while True:
            if self.split_plan is not None:  # before eviction: the new record may arrive first
                return Outcome("split", target=self.split_plan.group_id, split=self.split_plan)
            if self._evicted:
                return Outcome("evicted")
            if self.ctx.config.rounds and self.run_is_over():
                return Outcome("finished")
            self.peak_live = max(self.peak_live, len(self.live_members()))
            if self.leave_when_alone and self.peak_live > 1 and self._dissolved():
                return Outcome("dissolved")
            outcome = await between_rounds(self)
            if outcome is not None:
                return outcome
            await trio.sleep_until(self._next_round_at)
            self._next_round_at = trio.current_time() + self.ctx.config.timing.round_interval
            await self._run_round()
            await self.catch_up(wait=0.0)

    def run_is_over(self) -> bool:
        """Every other member left because its run was over, and nobody else is here: a node that
        joined later (its own count of rounds lags) would otherwise train alone on its own data."""
        return bool(self.finished) and self.live_members() == {self.ctx.peer_id}

    def _dissolved(self) -> bool:
        """Every other member left, or stayed silent for three expiry periods.

        Three, not one: a node starved of CPU hears nobody for a while and must not abandon a
        group that is alive (members that said goodbye count as gone at once).
        """
        return self.live_members(silence=DISSOLVE_SILENCE * self.ctx.config.timing.member_expiry) == {
            self.ctx.peer_id
        }

    async def wait_for_members(self, count: int, timeout: float) -> None:
        """Hold the first round until `count` members are live (bounded by `timeout`)."""
        with trio.move_on_after(timeout):
            while len(self.live_members()) < min(count, self.record.capacity):
                self._wake = trio.Event()
                with trio.move_on_after(POLL * 4):
                    await self._wake.wait()
        await self.catch_up(wait=0.0)

    async def catch_up(self, wait: float) -> None:
        """Adopt the group's round and model when the others are ahead of us (newcomer, slow node)."""
        with trio.move_on_after(wait):
            while not any(v.round >= 0 for p, v in self.members.items() if p != self.ctx.peer_id):
                self._wake = trio.Event()
                await self._wake.wait()
        ahead = [
            (view.round, peer)
            for peer, view in self.members.items()
            if peer != self.ctx.peer_id
            and view.round > self.round
            and view.model_hash
            and peer in self.live_members()
        ]
        if not ahead:
            return
        target_round, peer = max(ahead, key=lambda item: (item[0], item[1].to_bytes()))
        view = self.members[peer]
        try:
            blob = await self.ctx.fetch_blob(view.model_hash, None, [peer])
            model = tensor_codec.decode(blob, self.ctx.learner.fingerprint, self.ctx.learner.shapes)
        except (TransferError, InvalidMessage) as error:
            log.info("could not adopt the group's model from %s: %s", peer, error)
            return
        self.ctx.events.emit("caught_up", group=self.group_id, from_round=self.round, to_round=target_round)
        self.model, self.model_hash = model, content_hash(blob)
        self.ctx.transfer.store.put(blob)
        self.round = target_round
        self.announces = {r: a for r, a in self.announces.items() if r >= self.round}

    def _encode_model(self, weights: Weights) -> bytes:
        return tensor_codec.encode(weights, tensor_codec.CODECS["fp32"], self.ctx.learner.fingerprint)

    async def _train(self) -> tuple[Weights, int, float]:
        learner, settings, base, number = (
            self.ctx.learner,
            self.ctx.config.learn.training,
            self.model,
            self.round,
        )

        def work() -> tuple[Weights, int, float]:
            learner.load(base)
            result = learner.train(settings, number)
            return learner.weights(), result.samples, result.loss

        return await trio.to_thread.run_sync(work)

    async def _run_round(self) -> None:
        ctx, number = self.ctx, self.round
        started = ctx.clock()
        bytes_before = (ctx.traffic.bytes_in, ctx.traffic.bytes_out)
        expected = frozenset(p for p in self.live_members() if self.joined_at.get(p, 0.0) <= started)
        self.progress = RoundProgress(round=number, phase="training")
        weights, samples, train_loss = await self._train()

        codec = tensor_codec.get_codec(ctx.config.learn.codec)
        blob = tensor_codec.encode(weights, codec, ctx.learner.fingerprint)
        key = ctx.transfer.store.put(blob)
        own = tensor_codec.decode(blob, ctx.learner.fingerprint, ctx.learner.shapes)
        self.contributions, self.contributions_round = {ctx.peer_id: (own, samples)}, number
        self.bases = {ctx.peer_id: self.model_hash}
        own_labels = tuple(int(c) for c in ctx.learner.label_counts())
        self.label_counts = {ctx.peer_id: own_labels}
        announce = pb.UpdateAnnounce(
            group_id=self.group_id,
            round=number,
            samples=samples,
            metrics=Metrics(accuracy=self._metrics().accuracy, loss=train_loss, samples=samples).to_proto(),
            content_hash=key,
            size=len(blob),
            codec=codec.wire,
            inline_blob=blob if len(blob) <= ctx.config.learn.inline_limit else b"",
            model_fingerprint=ctx.learner.fingerprint,
            base_hash=self.model_hash,
            sent_at=ctx.clock(),
            label_counts=own_labels,
        )
        await self._publish(Kind.UPDATE_ANNOUNCE, announce)
        announced_at = ctx.clock()
        self.progress.phase = "collecting"
        self.progress.announced = {ctx.peer_id}
        self.progress.contributed = {ctx.peer_id}
        decision, last_arrival = await self._collect(number, expected, announced_at)
        if self.split_plan is not None:
            return  # our half of a split moves to its new group; this round is left unfinished

        self.progress.phase = "aggregating"
        self.lateness.append(max(0.0, last_arrival - announced_at))
        ordered = sorted(self.contributions.items(), key=lambda item: item[0].to_bytes())
        rule = get_aggregator(ctx.config.learn.aggregator)
        base, base_hash = self.model, self.model_hash
        new_model = await trio.to_thread.run_sync(aggregate, rule, [c for _, c in ordered])
        model_blob = self._encode_model(new_model)
        self.model, self.model_hash = new_model, ctx.transfer.store.put(model_blob)
        self.round = number + 1
        self.announces = {r: a for r, a in self.announces.items() if r >= self.round}
        if decision is Close.ALL_IN and all(self.bases.get(peer) == base_hash for peer, _ in ordered):
            await self._consider_split(number, ordered, base)

        self.progress.phase = "evaluating"
        learner, data = ctx.learner, ctx.learner.data
        test = await trio.to_thread.run_sync(learner.evaluate, data.common_test, new_model)
        local = await trio.to_thread.run_sync(learner.evaluate, data.test, new_model)
        self.accuracy, self.loss = test.accuracy, test.loss
        self.history.append((number, test.accuracy, test.loss))
        del self.history[:-HISTORY]
        wall = ctx.clock() - started
        self._rounds_per_minute = 60.0 / wall if wall > 0 else 0.0
        ctx.events.emit(
            "round",
            group=self.group_id,
            round=number,
            members=len(self.live_members()),
            contributors=len(ordered),
            peers=len(ctx.stack.connected_peers()),
            closed=decision.value,
            accuracy=round(test.accuracy, 4),
            loss=round(test.loss, 4),
            local_accuracy=round(local.accuracy, 4),
            train_loss=round(train_loss, 4),
            bytes_in=ctx.traffic.bytes_in - bytes_before[0],
            bytes_out=ctx.traffic.bytes_out - bytes_before[1],
            update_bytes=len(blob),
            wall_s=round(wall, 3),
            model_hash=self.model_hash.hex()[:16],
        )
        self.progress.phase = "done"
        ctx.checkpoint(self)

    async def _consider_split(
        self, number: int, ordered: list[tuple[ID, tuple[Weights, int]]], base: Weights
    ) -> None:
        """Leader only: feed this round's updates to the split policy; announce a split it calls for."""
        ctx = self.ctx
        if not (ctx.config.split and self.is_leader()):
            return
        members = [peer for peer, _ in ordered]
        labels = [self.label_counts.get(peer, ()) for peer in members]
        if len({len(counts) for counts in labels}) != 1 or not labels[0]:
            return  # without every member's class counts a split cannot be told from label skew

        def vectors() -> np.ndarray:
            return np.stack([update_vector(weights, base) for _, (weights, _) in ordered])

        updates = await trio.to_thread.run_sync(vectors)
        decision = split_step(self.split_state, members, updates, np.array(labels), SplitRules())
        self.split_state = decision.state
        if decision.halves is None:
            return
        first, second = decision.halves
        stay, leave = (first, second) if ctx.peer_id in first else (second, first)
        creator = leader_of(leave)
        nonce = hashlib.sha256(f"{self.group_id}:{number}:split".encode()).digest()[:16]
        message = pb.GroupSplit(
            group_id=self.group_id,
            round=number,
            stay=[p.to_bytes() for p in in_peer_order(stay)],
            leave=[p.to_bytes() for p in in_peer_order(leave)],
            new_group_id=group_id_for(creator, nonce),
            new_creator=creator.to_bytes(),
            nonce=nonce,
            separation=decision.separation,
            sent_at=ctx.clock(),
        )
        await self._publish(Kind.GROUP_SPLIT, message)
        self._apply_split(message)

    def _apply_split(self, message: pb.GroupSplit) -> None:
        """Follow a split: stay with our half's model, or prepare our half's new group."""
        me = self.ctx.peer_id
        stay = {ID(raw) for raw in message.stay}
        leave = {ID(raw) for raw in message.leave}
        if me not in stay | leave or self.split_plan is not None:
            return
        model = self._half_model(stay if me in stay else leave, message.round)
        self.ctx.events.emit(
            "split",
            group=self.group_id,
            round=message.round,
            stay=len(stay),
            leave=len(leave),
            to=self.group_id if me in stay else message.new_group_id,
            separation=round(message.separation, 3),
        )
        if me in stay:
            self.departed |= leave
            self.model, self.model_hash = model, self.ctx.transfer.store.put(self._encode_model(model))
            self._record_dirty = True
            return
        self.split_plan = SplitPlan(
            group_id=message.new_group_id,
            creator=ID(message.new_creator),
            nonce=message.nonce,
            members=tuple(in_peer_order(leave)),
            addrs={p: self.members[p].addrs if p in self.members else () for p in leave},
            round=message.round + 1,
            model=model,
            sent_at=message.sent_at,
            policy=self.record.policy,
            capacity=self.record.capacity,
        )
        self._wake.set()

    def _half_model(self, half: set[ID], number: int) -> Weights:
        """FedAvg of our half's updates of round `number` if we hold them all; else our model."""
        if self.contributions_round != number or not half <= set(self.contributions):
            return self.model
        ordered = in_peer_order(half)
        rule = get_aggregator(self.ctx.config.learn.aggregator)
        return aggregate(rule, [self.contributions[p] for p in ordered])

    async def _collect(
        self, number: int, expected: frozenset[ID], announced_at: float
    ) -> tuple[Close, float]:
        """Fetch others' updates for round `number` until the round-closing policy says stop."""
        timing = self.ctx.config.timing.rounds
        limit = wait_limit(self.lateness, timing)
        started: set[ID] = set()
        last_arrival = announced_at

        async def fetch(author: ID, announce: pb.UpdateAnnounce) -> None:
            nonlocal last_arrival
            try:
                weights = await self._receive_update(author, announce)
            except (TransferError, InvalidMessage) as error:
                self.ctx.events.emit(
                    "update_rejected",
                    group=self.group_id,
                    round=number,
                    author=str(author),
                    reason=str(error),
                )
                return
            self.contributions[author] = (weights, int(announce.samples))
            self.bases[author] = announce.base_hash
            self.label_counts[author] = tuple(announce.label_counts[:MAX_CLASSES])
            self.progress.contributed.add(author)
            last_arrival = self.ctx.clock()
            self._wake.set()

        async with trio.open_nursery() as fetchers:
            while True:
                for author, announce in list(self.announces.get(number, {}).items()):
                    if author not in started:
                        started.add(author)
                        self.progress.announced.add(author)
                        fetchers.start_soon(fetch, author, announce)
                live = self.live_members()
                moved_on = any(
                    v.round > number for p, v in self.members.items() if p in live and p != self.ctx.peer_id
                )
                if self.split_plan is not None:
                    decision = Close.MOVED_ON
                    break
                decision = close_decision(
                    expected=expected & live | {self.ctx.peer_id},
                    contributed=frozenset(self.contributions),
                    live=live,
                    waited=self.ctx.clock() - announced_at,
                    limit=limit,
                    timing=timing,
                    group_moved_on=moved_on,
                )
                if decision is not Close.WAIT:
                    break
                self._wake = trio.Event()
                with trio.move_on_after(POLL):
                    await self._wake.wait()
            fetchers.cancel_scope.cancel()
        return decision, last_arrival

    async def _receive_update(self, author: ID, announce: pb.UpdateAnnounce) -> Weights:
        learner = self.ctx.learner
        if announce.model_fingerprint != learner.fingerprint:
            raise InvalidMessage(f"model fingerprint {announce.model_fingerprint} differs from ours")
        if announce.inline_blob:
            if content_hash(announce.inline_blob) != announce.content_hash:
                raise InvalidMessage("inline update does not match its hash")
            blob = announce.inline_blob
            self.ctx.transfer.store.put(blob)
        else:
            holders = [author] + [p for p in self.live_members() if p not in (author, self.ctx.peer_id)]
            blob = await self.ctx.fetch_blob(announce.content_hash, announce.size, holders)
        return tensor_codec.decode(blob, learner.fingerprint, learner.shapes)
