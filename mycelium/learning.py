"""A learning node's life across groups: find or create a group, learn in it, move when it pays.

`LearningPeer.run` loops: enter a group (create, join by id, resume from a checkpoint, or discover
and choose), run a `GroupSession` until it ends, and decide from the outcome where to go next.
Between rounds it asks the migration policy whether another group serves our data better.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.peer.id import ID

from mycelium.context import NodeContext
from mycelium.errors import InvalidMessage, JoinRefused, TransferError
from mycelium.group import GroupSession, Outcome, SplitPlan
from mycelium.learn import Weights
from mycelium.learn import codec as tensor_codec
from mycelium.learn.train import Evaluation
from mycelium.net.gossip import run_topic
from mycelium.net.join import request_join, serve_joins
from mycelium.net.records import (
    MAX_GROUP_RECORD_BYTES,
    GroupRecord,
    Member,
    Metrics,
    Policy,
    group_id_for,
    record_from_signed,
)
from mycelium.net.signing import Kind, Signed, open_envelope
from mycelium.policy.admission import leader_of
from mycelium.policy.groups import (
    Candidate,
    MigrationState,
    choose_group,
    migration_step,
    paired_edge,
    worth_evaluating,
)
from mycelium.proto import mycelium_pb2 as pb

log = logging.getLogger(__name__)

JOIN_ATTEMPTS = 5
RETRY_DELAY = 2.0
DHT_LISTING_INTERVAL = 120.0
CREATE_JITTER = 4.0


@dataclass(frozen=True)
class Plan:
    """Where to go next: create | join | auto | resume | split."""

    action: str
    group_id: str = ""
    gain: float = 0.0
    came_from: str = ""
    state: dict[str, Any] | None = None  # resume: the checkpoint
    model: bytes = b""  # resume: the checkpointed model
    weights: Weights | None = None  # auto: carry this model into a group we create
    round: int = 0
    split: SplitPlan | None = None


@dataclass(frozen=True)
class CandidateView:
    """A candidate group as the dashboard shows it."""

    group_id: str
    members: int
    advertised: float
    measured: float


class LearningPeer:
    def __init__(self, ctx: NodeContext, release: trio.Event | None = None) -> None:
        self.ctx = ctx
        self.release = release  # --hold: the first round waits for it
        self.session: GroupSession | None = None
        self.candidates: list[CandidateView] = []
        self.migration = MigrationState()
        self.rounds_done = 0
        self.sessions = 0
        self.migrations = 0
        self._round_mark: int | None = None  # the session round up to which progress is counted
        self._checked_at = 0  # rounds_done at the last migration check
        self._last_dht_listing = 0.0

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        ctx = self.ctx
        serve_joins(ctx.stack.host, ctx.key_pair, self._on_join_request)
        ready = trio.Event()
        ctx.stack.nursery.start_soon(run_topic, ctx.discovery, self._on_discovery, ready, ctx.peer_id)
        await ready.wait()
        plan = self._initial_plan()
        while True:
            session = await self._enter(plan)
            session.leave_when_alone = ctx.config.group == "auto"
            self.sessions += 1
            self.session, self._round_mark = session, None
            if session.needs_advertising:  # after `self.session` is set: joins may come at once
                await self._advertise(session)
            ctx.events.emit(
                "joined",
                group=session.group_id,
                created=session.created,
                members=len(session.record.members),
                round=session.round,
            )
            if plan.action == "join" and plan.came_from and session.group_id == plan.group_id:
                self.migrations += 1
                ctx.events.emit(
                    "migrated",
                    **{"from": plan.came_from, "to": session.group_id, "gain": round(plan.gain, 4)},
                )
            outcome = Outcome("shutdown")
            try:
                outcome = await session.run(self._between_rounds)
            finally:
                self.session = None
                ctx.events.emit("left", group=session.group_id, reason=outcome.reason)
            if outcome.reason == "finished":
                return
            plan = self._next_plan(session, outcome)

    def _initial_plan(self) -> Plan:
        config = self.ctx.config
        saved = self.ctx.load_checkpoint()
        if saved is not None and config.group in ("auto", "new", saved[0]["group_id"]):
            state, model = saved
            return Plan("resume", group_id=state["group_id"], state=state, model=model)
        if config.group == "new":
            return Plan("create")
        if config.group == "auto":
            return Plan("auto")
        return Plan("join", group_id=config.group)

    def _next_plan(self, session: GroupSession, outcome: Outcome) -> Plan:
        if outcome.reason == "migrate" and outcome.target:
            # should the move fail, the model we carry goes into whatever group we end up in
            return Plan(
                "join",
                group_id=outcome.target,
                gain=outcome.gain,
                came_from=session.group_id,
                weights=session.model,
                round=session.round,
            )
        if outcome.reason == "split" and outcome.split:
            return Plan("split", group_id=outcome.split.group_id, split=outcome.split)
        if self.ctx.config.group in ("auto", "new"):
            # keep what we learned: a group we create next starts from our current model; a group
            # that dissolved around us is not one to look for again
            gone = session.group_id if outcome.reason == "dissolved" else ""
            return Plan("auto", group_id=gone, weights=session.model, round=session.round)
        return Plan("join", group_id=session.group_id)

    async def _enter(self, plan: Plan) -> GroupSession:
        if plan.action == "create":
            return await self._create(self.ctx.learner.initial_weights(), 0)
        if plan.action == "resume":
            return await self._resume(plan)
        if plan.action == "split" and plan.split is not None:
            return await self._enter_split(plan.split)
        if plan.action == "join":
            try:
                return await self._join_by_id(
                    plan.group_id, attempts=JOIN_ATTEMPTS if not plan.came_from else 1
                )
            except JoinRefused as error:
                if self.ctx.config.group not in ("auto", "new"):
                    raise
                self.ctx.events.emit("join_failed", group=plan.group_id, reason=str(error))
        return await self._discover_and_enter(plan)

    # --- creating and joining -------------------------------------------------------------------

    async def _create(self, model: Weights, round_number: int) -> GroupSession:
        ctx, config = self.ctx, self.ctx.config
        now = ctx.clock()
        nonce = os.urandom(16)
        group_id = group_id_for(ctx.peer_id, nonce)
        record = self._first_version(
            now,
            group_id=group_id,
            task=config.task,
            name=config.name or f"group-{group_id[:8]}",
            model_fingerprint=ctx.learner.fingerprint,
            policy=config.policy,
            capacity=config.capacity,
            round=round_number,
            members=(self._me_as_member(now),),
            creator=ctx.peer_id,
            nonce=nonce,
        )
        session = GroupSession(ctx, record, model, round_number, created=True)
        session.needs_advertising = True
        return session

    def _first_version(self, now: float, **fields: Any) -> GroupRecord:
        """Version 1 of a group record, dated `now`, advertising our sample count."""
        return GroupRecord(
            metrics=Metrics(samples=len(self.ctx.learner.data.train)),
            version=1,
            updated_at=now,
            expires_at=now + self.ctx.config.timing.record_ttl,
            **fields,
        )

    def _me_as_member(self, now: float) -> Member:
        return Member(self.ctx.peer_id, now, now, tuple(self.ctx.listen_addrs()[:4]))

    async def _advertise(self, session: GroupSession) -> None:
        """Make a group we lead findable before telling anyone we are in it."""
        ctx = self.ctx
        session.record = session.record.successor(
            ctx.clock(), ctx.config.timing.record_ttl, model_hash=session.model_hash
        )
        ctx.transfer.store.pin("record", session.model_hash)
        await ctx.publish_discovery(session.record)  # first: nodes deciding right now hear it at once
        await ctx.registry.put_group(session.record)
        await ctx.registry.advertise(session.record.task, [session.group_id])

    async def _enter_split(self, split: SplitPlan) -> GroupSession:
        """Our half of a split group: every member builds the same record; its creator advertises it."""
        ctx = self.ctx
        record = self._first_version(
            split.sent_at,
            group_id=split.group_id,
            task=ctx.config.task,
            name=f"group-{split.group_id[:8]}",
            model_fingerprint=ctx.learner.fingerprint,
            policy=split.policy,
            capacity=split.capacity,
            round=split.round,
            members=tuple(
                Member(p, split.sent_at, split.sent_at, split.addrs.get(p, ())[:4]) for p in split.members
            ),
            creator=split.creator,
            nonce=split.nonce,
        )
        created = split.creator == ctx.peer_id
        session = GroupSession(ctx, record, split.model, split.round, created=created)
        session.needs_advertising = created
        return session

    async def _resume(self, plan: Plan) -> GroupSession:
        """Back after a restart: rejoin our group, or carry it on alone if nobody else answers."""
        ctx, state = self.ctx, plan.state or {}
        try:
            model = tensor_codec.decode(plan.model, ctx.learner.fingerprint, ctx.learner.shapes)
        except InvalidMessage:
            ctx.forget_checkpoint()
            return await self._enter(Plan("auto") if ctx.config.group != "new" else Plan("create"))
        try:
            return await self._join_by_id(plan.group_id, attempts=1)
        except JoinRefused as error:
            log.info("resuming group %s alone: %s", plan.group_id, error)
        now = ctx.clock()
        record = self._first_version(
            now,
            group_id=plan.group_id,
            task=state["task"],
            name=state["name"],
            model_fingerprint=state["model_fingerprint"],
            policy=Policy(state["policy"]),
            capacity=int(state["capacity"]),
            round=int(state["round"]),
            members=(self._me_as_member(now),),
            creator=ID.from_base58(state["creator"]),
            nonce=bytes.fromhex(state["nonce"]),
        )
        session = GroupSession(ctx, record, model, int(state["round"]), created=False)
        session.needs_advertising = True
        return session

    async def _join_by_id(self, group_id: str, attempts: int) -> GroupSession:
        last: Exception = JoinRefused(f"group {group_id} not found in the DHT")
        for attempt in range(attempts):
            if attempt:
                await trio.sleep(RETRY_DELAY)
            record = await self.ctx.registry.get_group(group_id) or self.ctx.seen_groups.get(group_id)
            if record is None or record.expires_at <= self.ctx.clock():
                last = JoinRefused(f"group {group_id} not found in the DHT")
                continue
            try:
                return await self._join(record)
            except JoinRefused as error:
                last = error
                if "full" in str(error) or "invite" in str(error) or "fingerprint" in str(error):
                    break
        raise JoinRefused(str(last))

    async def _join(self, record: GroupRecord) -> GroupSession:
        admitted = await self._request_admission(record)
        model, round_number = await self._group_model(admitted)
        return GroupSession(self.ctx, admitted, model, round_number, created=False)

    async def _request_admission(self, record: GroupRecord) -> GroupRecord:
        ctx = self.ctx
        others = [m for m in record.members if m.peer_id != ctx.peer_id]
        if not others:
            raise JoinRefused(f"group {record.group_id} lists no member to ask")
        for member in others:
            ctx.remember_addrs(member.peer_id, member.addrs)
        first = leader_of(m.peer_id for m in others)
        queue = [first] + sorted(
            (m.peer_id for m in others if m.peer_id != first), key=lambda p: p.to_bytes()
        )
        asked: set[ID] = set()
        request = pb.JoinRequest(
            group_id=record.group_id,
            model_fingerprint=ctx.learner.fingerprint,
            invite=ctx.config.invite,
            addrs=ctx.listen_addrs()[:4],
            sent_at=ctx.clock(),
        )
        failures: list[str] = []
        while queue:
            member = queue.pop(0)
            if member in asked:
                continue
            asked.add(member)
            try:
                _, response = await request_join(ctx.stack.host, ctx.key_pair, member, request)
            except JoinRefused as error:
                failures.append(str(error))
                continue
            if response.status == pb.JoinResponse.ADMITTED:
                return self._admitted_record(response, record.group_id)
            if response.status == pb.JoinResponse.REDIRECT:
                leader = ID(response.leader)
                ctx.remember_addrs(leader, response.leader_addrs)
                queue.insert(0, leader)
                continue
            if response.status == pb.JoinResponse.NOT_MEMBER:  # a stale record: ask the next member
                failures.append(f"{str(member)[-8:]} has left the group")
                continue
            if response.status == pb.JoinResponse.FULL:
                raise JoinRefused(f"group {record.group_id} is full")
            raise JoinRefused(f"group {record.group_id} refused us: {response.reason}")
        raise JoinRefused(f"no member of group {record.group_id} answered ({'; '.join(failures)[:300]})")

    def _admitted_record(self, response: pb.JoinResponse, group_id: str) -> GroupRecord:
        try:
            signed = open_envelope(response.record, Kind.GROUP_RECORD, MAX_GROUP_RECORD_BYTES)
            record = record_from_signed(signed, self.ctx.clock())
        except InvalidMessage as error:
            raise JoinRefused(f"admission carried an invalid record: {error}") from None
        if record.group_id != group_id or self.ctx.peer_id not in record.member_ids:
            raise JoinRefused("admission record does not list us")
        return record

    async def _group_model(self, record: GroupRecord) -> tuple[Weights, int]:
        """The group's current model, or the initial one when it cannot be had (rounds catch up)."""
        try:
            return await self._fetch_group_model(record)
        except (TransferError, InvalidMessage) as error:
            log.info("group model unavailable (%s); the first round will catch up", error)
            return self.ctx.learner.initial_weights(), record.round

    async def _fetch_group_model(self, record: GroupRecord) -> tuple[Weights, int]:
        """The model whose hash the record carries (initial weights for a group that has none yet)."""
        learner = self.ctx.learner
        if not record.model_hash:
            return learner.initial_weights(), record.round
        for member in record.members:
            self.ctx.remember_addrs(member.peer_id, member.addrs)
        holders = [m.peer_id for m in record.members if m.peer_id != self.ctx.peer_id]
        blob = await self.ctx.fetch_blob(record.model_hash, None, holders)
        return tensor_codec.decode(blob, learner.fingerprint, learner.shapes), record.round

    async def _on_join_request(self, remote: ID, request: pb.JoinRequest) -> pb.JoinResponse:
        session = self.session
        if session is not None and request.group_id == session.group_id:
            return await session.admit(remote, request)
        return pb.JoinResponse(status=pb.JoinResponse.NOT_MEMBER, reason="we are not a member of that group")

    def _on_discovery(self, signed: Signed) -> None:
        try:
            record = record_from_signed(signed, self.ctx.clock())
        except InvalidMessage:
            return
        if record.task == self.ctx.config.task:
            self.ctx.note_group(record)

    # --- choosing a group -----------------------------------------------------------------------

    async def _known_groups(self, ask_dht: bool = True) -> list[GroupRecord]:
        """Groups of our task with our model: from the DHT and from the discovery topic."""
        ctx = self.ctx
        found: dict[str, GroupRecord] = {}
        if ask_dht:
            found = {r.group_id: r for r in await ctx.registry.list_groups(ctx.config.task)}
            self._last_dht_listing = ctx.clock()
        now = ctx.clock()
        for record in list(ctx.seen_groups.values()):
            known = found.get(record.group_id)
            if record.expires_at > now and (known is None or record.updated_at > known.updated_at):
                found[record.group_id] = record
        return [r for r in found.values() if r.model_fingerprint == ctx.learner.fingerprint]

    def _admits_us(self, record: GroupRecord) -> bool:
        return record.policy is Policy.OPEN or bool(self.ctx.config.invite)

    async def _evaluate(
        self, records: list[GroupRecord], exclude: str = "", baseline: Evaluation | None = None
    ) -> list[Candidate]:
        """Pull the most promising groups' models and score them on our validation split
        (against `baseline`, our own group's model on the same images, when there is one)."""
        ctx, rules = self.ctx, self.ctx.config.rules
        hints = [
            Candidate(r.group_id, len(r.members), r.capacity, r.metrics.accuracy, 0.0, self._admits_us(r))
            for r in records
            if r.group_id != exclude
        ]
        by_id = {r.group_id: r for r in records}
        evaluated: list[Candidate] = []

        async def score(group_id: str) -> None:
            record = by_id[group_id]
            try:
                model, _ = await self._fetch_group_model(record)
            except (TransferError, InvalidMessage) as error:
                ctx.events.emit("evaluation_failed", group=group_id, reason=str(error))
                return
            result = await trio.to_thread.run_sync(ctx.learner.evaluate, ctx.learner.data.validation, model)
            evaluated.append(
                Candidate(
                    group_id,
                    len(record.members),
                    record.capacity,
                    record.metrics.accuracy,
                    result.accuracy,
                    self._admits_us(record),
                    paired_edge(baseline.losses, result.losses) if baseline is not None else 0.0,
                    result.expected_accuracy,
                )
            )

        async with trio.open_nursery() as nursery:
            for group_id in worth_evaluating(hints, rules):
                nursery.start_soon(score, group_id)
        self.candidates = [
            CandidateView(c.group_id, c.members, c.advertised_accuracy, c.measured_accuracy)
            for c in evaluated
        ]
        if evaluated:
            ctx.events.emit(
                "evaluated",
                candidates=[
                    {
                        "group": c.group_id,
                        "members": c.members,
                        "advertised": round(c.advertised_accuracy, 4),
                        "measured": round(c.measured_accuracy, 4),
                        "expected": round(c.soft_accuracy, 4),
                        "edge": round(c.edge, 2) if baseline is not None else None,
                    }
                    for c in sorted(evaluated, key=lambda c: c.group_id)
                ],
            )
        return evaluated

    async def _discover_and_enter(self, plan: Plan) -> GroupSession:
        """Join the best group that fits our data, or create one (with the model we carry, if any).

        Before creating, wait a random moment while listening on the task's discovery topic: nodes
        that start together would otherwise all create groups of one at the same instant.
        """
        ctx = self.ctx
        excluded = {plan.group_id} if plan.action == "auto" and plan.group_id else set()
        candidates = await self._evaluate(await self._known_groups())
        for attempt in range(2):
            tried = set(excluded)
            while choice := choose_group(
                [c for c in candidates if c.group_id not in tried], ctx.config.rules
            ):
                tried.add(choice)
                try:
                    return await self._join_by_id(choice, attempts=1)
                except JoinRefused as error:
                    ctx.events.emit("join_failed", group=choice, reason=str(error))
                    excluded.add(choice)
            if attempt == 0:
                await trio.sleep(random.uniform(0.0, CREATE_JITTER))
                candidates = await self._evaluate(await self._known_groups(ask_dht=False))
        if plan.weights is not None:
            return await self._create(plan.weights, plan.round)
        return await self._create(ctx.learner.initial_weights(), 0)

    # --- between rounds -------------------------------------------------------------------------

    async def _between_rounds(self, session: GroupSession) -> Outcome | None:
        """Before each round: count progress, stop when done, check other groups when due."""
        config = self.ctx.config
        if self._round_mark is None:  # the session's first round
            if self.sessions == 1:  # only when the node starts
                await self._start_line(session)
            self._round_mark = session.round
            self._checked_at = self.rounds_done
        # rounds run here, and rounds caught up with when the group was ahead, are progress
        self.rounds_done += session.round - self._round_mark
        self._round_mark = session.round
        if config.rounds and self.rounds_done >= config.rounds:
            return Outcome("finished")
        due = config.evaluate_every and self.rounds_done - self._checked_at >= config.evaluate_every
        if config.group == "auto" and due:
            self._checked_at = self.rounds_done
            return await self._consider_migration(session)
        return None

    async def _start_line(self, session: GroupSession) -> None:
        """Before the node's first round: wait for enough members, and for the release (--hold)."""
        config = self.ctx.config
        if config.min_members > 1:
            await session.wait_for_members(config.min_members, config.min_members_timeout)
        if self.release is not None:
            self.ctx.events.emit("holding", group=session.group_id, members=len(session.live_members()))
            with trio.move_on_after(config.hold_timeout):
                await self.release.wait()
            await session.catch_up(wait=0.0)  # the group may have moved on meanwhile

    async def _consider_migration(self, session: GroupSession) -> Outcome | None:
        ctx = self.ctx
        own_score = await trio.to_thread.run_sync(
            ctx.learner.evaluate, ctx.learner.data.validation, session.model
        )
        own = Candidate(
            session.group_id,
            len(session.live_members()),
            session.record.capacity,
            session.accuracy,
            own_score.accuracy,
            expected_accuracy=own_score.expected_accuracy,
        )
        # members hear every group's record on the discovery topic; the DHT is asked now and then
        ask_dht = ctx.clock() - self._last_dht_listing >= DHT_LISTING_INTERVAL
        known = await self._known_groups(ask_dht)
        candidates = await self._evaluate(known, exclude=session.group_id, baseline=own_score)
        decision = migration_step(self.migration, self.rounds_done, own, candidates, ctx.config.rules)
        self.migration = decision.state
        if decision.move_to is None:
            return None
        return Outcome("migrate", target=decision.move_to, gain=decision.gain)
