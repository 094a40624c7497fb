"""A learning node's life across groups: enter a group, learn in it, move on when it pays.

`LearningPeer.run` loops: carry out a `Plan` (policy/lifecycle.py) to enter a group, run a
`GroupSession` until it ends, and turn the `Outcome` into the next plan. Between rounds it counts
progress and asks the migration policy (policy/groups.py) whether another group serves our data
better.
"""

from __future__ import annotations

import logging
import random

import trio

from mycelium.errors import JoinRefused
from mycelium.learn import Weights
from mycelium.net.exchange import serve_groups
from mycelium.net.gossip import run_topic
from mycelium.net.join import serve_joins
from mycelium.node import checkpoint
from mycelium.node.admission import answer_join
from mycelium.node.discovery import GroupDirectory, Listing, Scout
from mycelium.node.entry import Entry
from mycelium.node.joining import EntryPoint, entry_points
from mycelium.node.outcome import Outcome, SplitPlan
from mycelium.node.services import Services
from mycelium.node.session import GroupSession, catch_up
from mycelium.policy.groups import (
    MAX_CREATE_ATTEMPTS,
    Candidate,
    MigrationState,
    choose_group,
    create_now,
    migration_step,
)
from mycelium.policy.lifecycle import Ending, Plan, Step, after_failed_join, first_plan, next_plan
from mycelium.policy.messages import JoinAnswer, JoinRequest, JoinStatus

log = logging.getLogger(__name__)

DHT_LISTING_INTERVAL = 120.0
CREATE_JITTER = 4.0


class LearningPeer:
    def __init__(self, services: Services, release: trio.Event | None = None) -> None:
        self.services = services
        self.release = release  # --hold: the first round waits for it
        self.directory = GroupDirectory(services)
        self.scout = Scout(services, directory=self.directory)
        self.entry = Entry(services, self.directory)
        self.session: GroupSession | None = None
        self.migration = MigrationState()
        self.rounds_done = 0
        self.sessions = 0
        self.migrations = 0
        self._carried: tuple[Weights, int] | None = None  # the model we take to the next group
        self._last: Outcome | None = None
        self._round_mark: int | None = None  # the session round up to which progress is counted
        self._checked_at = 0  # rounds_done at the last migration check

    @property
    def candidates(self) -> list:  # type: ignore[type-arg]
        return self.scout.candidates

    # --- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        services = self.services
        serve_joins(services.stack.host, services.key_pair, self._on_join_request)
        serve_groups(services.stack.host, self._shared_groups)
        ready = trio.Event()
        services.stack.nursery.start_soon(
            run_topic, services.discovery, self.directory.on_signed, ready, services.peer_id
        )
        await ready.wait()
        # every new group starts from these weights: evaluating one then needs no pull
        services.transfer.store.pin("initial", services.store_model(services.learner.initial_weights()))
        saved = checkpoint.load(services.config.data_dir, services.config.task, services.learner.fingerprint)
        plan: Plan | None = first_plan(services.config.group, saved.record.group_id if saved else None)
        while plan is not None:
            session = await self._enter(plan, saved)
            saved = None
            session.leave_when_alone = services.config.group == "auto"
            self.sessions += 1
            self.session, self._round_mark = session, None
            if session.advertise:  # after `self.session` is set: joins may come at once
                await self.entry.advertise(session)
            services.events.emit(
                "joined",
                group=session.group_id,
                created=session.created,
                members=len(session.record.members),
                round=session.round,
            )
            if plan.step is Step.JOIN and plan.came_from and session.group_id == plan.group_id:
                self.migrations += 1
                services.events.emit(
                    "migrated",
                    **{"from": plan.came_from, "to": session.group_id, "gain": round(plan.gain, 4)},
                )
            outcome = Outcome(Ending.SHUTDOWN)
            try:
                outcome = await session.run(self._between_rounds)
            finally:
                self.session = None
                services.events.emit(
                    "left", group=session.group_id, reason=outcome.ending.value, refused=session.refused()
                )
            self._carried, self._last = (session.model, session.round), outcome
            plan = next_plan(
                outcome.ending, services.config.group, session.group_id, outcome.target, outcome.gain
            )

    async def _enter(self, plan: Plan, saved: checkpoint.Checkpoint | None) -> GroupSession:
        if plan.step is Step.RESUME and saved is not None:
            session = await self.entry.resume(saved)
            if session is not None:
                return session
            plan = Plan(Step.CREATE) if self.services.config.group == "new" else Plan(Step.AUTO)
        if plan.step is Step.CREATE:
            return self.entry.create(self.services.learner.initial_weights(), 0)
        if plan.step is Step.FOUND and self._last is not None and self._last.split is not None:
            return await self._found(self._last.split)
        if plan.step is Step.JOIN:
            last = self._last.record if self._last is not None else None
            through = (
                entry_points(last, self.services.peer_id) if last and last.group_id == plan.group_id else []
            )
            return await self._join(plan, through, self._carried[0] if self._carried else None)
        return await self._discover_and_enter(plan)

    async def _found(self, split: SplitPlan) -> GroupSession:
        """Our half of a split: its creator creates the group, the others join it through the creator."""
        founded = self.entry.found(split)
        if founded is not None:
            return founded
        creator = [(split.creator, split.addrs.get(split.creator, ()))]
        return await self._join(Plan(Step.JOIN, group_id=split.group_id, patient=True), creator, split.model)

    async def _join(self, plan: Plan, through: list[EntryPoint], carried: Weights | None) -> GroupSession:
        try:
            return await self.entry.join(plan.group_id, through, patient=plan.patient, carried=carried)
        except JoinRefused as error:
            self.services.events.emit("join_failed", group=plan.group_id, reason=str(error))
            fallback = after_failed_join(plan, self.services.config.group)
            if fallback is None:
                raise
            return await self._discover_and_enter(fallback)

    # --- choosing a group -------------------------------------------------------------------------

    async def _discover_and_enter(self, plan: Plan) -> GroupSession:
        """Join the best group that fits our data, or create one (with the model we carry, if any).

        Before creating, wait a random moment while listening on the task's discovery topic: nodes
        that start together would otherwise all create groups of one at the same instant. When the
        groups we tried were full, most nodes wait for the few that create (policy/groups.py
        `create_now`).
        """
        services, scout = self.services, self.scout
        excluded = {plan.avoid} if plan.avoid else set()
        crowded = False
        candidates = await scout.evaluate(await scout.known_groups())
        for attempt in range(MAX_CREATE_ATTEMPTS):
            tried = set(excluded)
            while choice := choose_group(
                [c for c in candidates if c.group_id not in tried], services.config.rules
            ):
                tried.add(choice)
                try:
                    return await self.entry.join(choice, carried=self._carried[0] if self._carried else None)
                except JoinRefused as error:
                    services.events.emit("join_failed", group=choice, reason=str(error))
                    crowded = crowded or error.full
                    if error.final:
                        excluded.add(choice)
            connected = bool(services.stack.connected_peers())
            if create_now(attempt, crowded, services.config.capacity, random.random(), connected):
                break
            await trio.sleep(random.uniform(0.0, CREATE_JITTER))
            candidates = await scout.evaluate(await scout.known_groups(Listing.NEVER))
        model, round_number = self._carried or (services.learner.initial_weights(), 0)
        return self.entry.create(model, round_number)

    def _shared_groups(self, task: str) -> list[bytes]:
        """The records we share with a peer that asks (net/exchange.py): our own group's first (the
        discovery topic does not bring us our own announcements), then those we heard."""
        session = self.session
        own = session.record if session is not None and session.record.task == task else None
        heard = self.directory.shared(task, besides=own.group_id if own else None)
        return [own.signed, *heard] if own else heard

    async def _on_join_request(self, request: JoinRequest) -> JoinAnswer:
        session = self.session
        if session is not None and request.group_id == session.group_id:
            return await answer_join(session, request)
        return JoinAnswer(JoinStatus.NOT_MEMBER, reason="we are not a member of that group")

    # --- between rounds ---------------------------------------------------------------------------

    async def _between_rounds(self, session: GroupSession) -> Outcome | None:
        """Before each round: count progress, stop when done, check other groups when due."""
        config = self.services.config
        if self._round_mark is None:  # the session's first round
            if self.sessions == 1:  # only when the node starts
                await self._start_line(session)
            self._round_mark = session.round
            self._checked_at = self.rounds_done
        # rounds run here, and rounds caught up with when the group was ahead, are progress
        self.rounds_done += session.round - self._round_mark
        self._round_mark = session.round
        if config.rounds and self.rounds_done >= config.rounds:
            return Outcome(Ending.FINISHED)
        alone = len(session.live()) == 1
        every = 1 if alone else config.evaluate_every
        due = config.evaluate_every and self.rounds_done - self._checked_at >= every
        if config.group == "auto" and due:
            self._checked_at = self.rounds_done
            return await self._consider_migration(session)
        return None

    async def _start_line(self, session: GroupSession) -> None:
        """Before the node's first round: wait for enough members, and for the release (--hold)."""
        config = self.services.config
        if config.min_members > 1:
            session.progress.enter("holding")
            await session.wait_for_members(config.min_members, config.min_members_timeout)
        if self.release is not None:
            session.progress.enter("holding")  # the watchdog does not count this wait (--hold-timeout does)
            self.services.events.emit("holding", group=session.group_id, members=len(session.live()))
            with trio.move_on_after(config.hold_timeout):
                await self.release.wait()
            await catch_up(session)  # the group may have moved on meanwhile

    async def _consider_migration(self, session: GroupSession) -> Outcome | None:
        services, scout = self.services, self.scout
        learner = services.learner
        own_score = await trio.to_thread.run_sync(learner.evaluate, learner.data.validation, session.model)
        own = Candidate(
            session.group_id,
            len(session.live()),
            session.record.capacity,
            session.accuracy,
            own_score.accuracy,
            expected_accuracy=own_score.expected_accuracy,
        )
        # members hear every group's record on the discovery topic; the DHT is asked now and then
        due = services.clock() - scout.last_dht_listing >= DHT_LISTING_INTERVAL
        known = await scout.known_groups(Listing.ALWAYS if due else Listing.NEVER)
        candidates = await scout.evaluate(known, exclude=session.group_id, baseline=own_score)
        decision = migration_step(self.migration, self.rounds_done, own, candidates, services.config.rules)
        self.migration = decision.state
        if decision.move_to is None:
            return None
        return Outcome(Ending.MIGRATE, target=decision.move_to, gain=decision.gain)
