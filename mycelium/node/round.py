"""One learning round of one member: train, announce, collect, aggregate, evaluate.

`run_round` gets what the round starts from (`RoundStart`) and a read-only `GroupView` of the
session (who is live, which announcements arrived, whether the group moved on), and returns a
`RoundResult`; the session applies it. The round never changes the session, and the session never
reaches into a round. When to close is decided by policy/rounds.py; every wait is bounded by the
round ceiling (policy.rounds.RoundTiming), every pull by the transfer deadline.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio

from mycelium.errors import InvalidMessage, TransferError
from mycelium.learn import Weights
from mycelium.learn import codec as tensor_codec
from mycelium.learn.aggregate import aggregate, get_aggregator
from mycelium.net.transfer import content_hash
from mycelium.node.services import Services
from mycelium.node.trust import Scored, measure
from mycelium.policy.catchup import CatchUp
from mycelium.policy.messages import Announce
from mycelium.policy.peers import PeerId, in_peer_order
from mycelium.policy.rounds import Close, close_decision, wait_limit
from mycelium.policy.trust import explain, round_score

log = logging.getLogger(__name__)

POLL = 0.25
LATENESS_KEPT = 20


class GroupView(Protocol):
    """What a round may read of its session."""

    group_id: str

    def live(self) -> frozenset[PeerId]: ...

    def moved_on(self, round_number: int) -> bool: ...

    def announces(self, round_number: int) -> dict[PeerId, Announce]: ...

    def interrupted(self) -> bool: ...  # the session must end now (e.g. its half of a split leaves)

    async def publish(self, data: bytes) -> None: ...  # on the group topic

    def topic_peers(self) -> int: ...  # peers known to be subscribed to the group topic

    async def news(self, timeout: float) -> None: ...  # until a message arrives, or `timeout`


@dataclass
class RoundProgress:
    """What the dashboard and the watchdog see of the round in flight."""

    round: int = 0
    phase: str = "starting"
    since: float = field(default_factory=time.monotonic)  # when the phase began
    announced: set[PeerId] = field(default_factory=set)
    contributed: set[PeerId] = field(default_factory=set)

    def enter(self, phase: str) -> None:
        if phase != self.phase:
            self.phase, self.since = phase, time.monotonic()


@dataclass(frozen=True)
class RoundStart:
    number: int
    base: Weights
    base_hash: bytes
    expected: frozenset[PeerId]  # live members that were in the group when the round began


@dataclass(frozen=True)
class Contribution:
    author: PeerId
    weights: Weights
    samples: int
    base_hash: bytes  # the model it was trained from
    label_counts: tuple[int, ...]


@dataclass(frozen=True)
class RoundResult:
    number: int
    base: Weights  # the model the round started from
    model: Weights
    model_hash: bytes
    closed: Close
    contributions: tuple[Contribution, ...]  # in peer order, every one we received
    trusted: frozenset[PeerId]  # the contributors our reputation book let into the average
    lateness: float  # seconds from our announcement to the last contribution we took
    train_loss: float
    update_bytes: int
    accuracy: float
    loss: float
    local_accuracy: float
    wall_s: float
    phase_s: dict[str, float] = field(default_factory=dict)  # seconds of each phase, in order


async def run_round(
    services: Services, view: GroupView, start: RoundStart, lateness: list[float], progress: RoundProgress
) -> RoundResult | None:
    """Run round `start.number`; None when the session was interrupted before it could close."""
    config, learner = services.config, services.learner
    began = services.clock()
    phases = PhaseClock(services.clock)
    progress.round = start.number
    progress.enter("training")
    weights, samples, train_loss = await _train(services, start)
    phases.lap("train")

    codec = tensor_codec.get_codec(config.learn.codec)
    blob = tensor_codec.encode(weights, codec, learner.fingerprint)
    key = services.transfer.store.put(blob)
    own = tensor_codec.decode(blob, learner.fingerprint, learner.shapes)
    labels = tuple(int(c) for c in learner.label_counts())
    contributions = {services.peer_id: Contribution(services.peer_id, own, samples, start.base_hash, labels)}
    inline = len(blob) <= config.learn.inline_limit
    announce = Announce(
        stamp=services.stamp(),
        group_id=view.group_id,
        round=start.number,
        samples=samples,
        accuracy=0.0,
        train_loss=train_loss,
        content_hash=key,
        size=len(blob),
        codec=codec.wire,
        inline_blob=blob if inline else b"",
        model_fingerprint=learner.fingerprint,
        base_hash=start.base_hash,
        label_counts=labels,
        manifest_hash=b"" if inline else services.transfer.manifest_hash(key),
    )
    sealed = services.seal(announce)
    await view.publish(sealed)
    unheard = sealed if view.topic_peers() == 0 else None  # published into the void: again, later
    announced_at = services.clock()
    phases.lap("announce")
    progress.enter("collecting")
    progress.announced, progress.contributed = {services.peer_id}, {services.peer_id}
    closed, last_arrival = await _collect(
        services, view, start, contributions, announced_at, lateness, progress, unheard
    )
    if closed is None:
        return None
    phases.lap("collect")

    progress.enter("aggregating")
    ordered = tuple(contributions[p] for p in in_peer_order(contributions))
    trusted = await trio.to_thread.run_sync(_judge, services, view.group_id, start, ordered)
    phases.lap("judge")
    rule = get_aggregator(config.learn.aggregator)
    model = await trio.to_thread.run_sync(
        aggregate, rule, start.base, [(c.weights, c.samples) for c in trusted]
    )
    model_hash = services.store_model(model)
    phases.lap("aggregate")

    progress.enter("evaluating")
    data = learner.data
    test = await trio.to_thread.run_sync(learner.evaluate, data.common_test, model)
    local = await trio.to_thread.run_sync(learner.evaluate, data.test, model)
    phases.lap("evaluate")
    return RoundResult(
        number=start.number,
        base=start.base,
        model=model,
        model_hash=model_hash,
        closed=closed,
        contributions=ordered,
        trusted=frozenset(c.author for c in trusted),
        lateness=max(0.0, last_arrival - announced_at),
        train_loss=train_loss,
        update_bytes=len(blob),
        accuracy=test.accuracy,
        loss=test.loss,
        local_accuracy=local.accuracy,
        wall_s=services.clock() - began,
        phase_s=phases.laps,
    )


class PhaseClock:
    """Seconds spent in each phase of a round, taken lap by lap."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = clock()
        self.laps: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = self._clock()
        self.laps[phase] = now - self._last
        self._last = now


def _judge(
    services: Services, group_id: str, start: RoundStart, ordered: tuple[Contribution, ...]
) -> tuple[Contribution, ...]:
    """Score every other contributor on our validation data (policy/trust.py) and keep the ones our
    reputation book still trusts (blocking: run in a thread)."""
    learner, book, me = services.learner, services.reputation, services.peer_id
    if services.config.trust is None:
        return ordered

    def loss_of(weights: Weights) -> float:
        return learner.evaluate(learner.data.validation, weights).loss

    scored = [Scored(c.author, c.weights, c.samples, _base_of(services, c, start)) for c in ordered]
    evidence = measure(loss_of, start.base, scored, me, book.rules)
    for author, seen in evidence.items():
        was_trusted = book.trusted(author)
        level = book.record(author, round_score(seen, book.rules))
        if was_trusted and not book.trusted(author):
            services.events.emit(
                "distrusted",
                group=group_id,
                round=start.number,
                peer=str(author),
                reputation=round(level, 3),
                reason=explain(seen, book.rules),
            )
    return tuple(c for c in ordered if c.author == me or book.trusted(c.author))


def _base_of(services: Services, contribution: Contribution, start: RoundStart) -> Weights | None:
    """The model a contribution was trained from, when it is not ours and we still hold it."""
    if contribution.base_hash == start.base_hash:
        return None
    blob = services.transfer.store.get(contribution.base_hash)
    if blob is None:
        return None
    try:
        return tensor_codec.decode(blob, services.learner.fingerprint, services.learner.shapes)
    except InvalidMessage:
        return None


async def _train(services: Services, start: RoundStart) -> tuple[Weights, int, float]:
    learner, settings = services.learner, services.config.learn.training

    def work() -> tuple[Weights, int, float]:
        learner.load(start.base)
        result = learner.train(settings, start.number)
        weights, samples = learner.weights(), result.samples
        if services.attack is not None:
            weights = services.attack.update(start.base, weights)
            samples = services.attack.samples(samples)
        return weights, samples, result.loss

    return await trio.to_thread.run_sync(work)


async def _collect(
    services: Services,
    view: GroupView,
    start: RoundStart,
    contributions: dict[PeerId, Contribution],
    announced_at: float,
    lateness: list[float],
    progress: RoundProgress,
    unheard: bytes | None = None,
) -> tuple[Close | None, float]:
    """Take others' updates for the round until the round-closing policy says stop. `unheard`: our
    announcement, when no peer was subscribed to hear it (a member that joined just before the
    round: its subscription had not spread yet); it is published again once one is."""
    timing = services.config.timing.rounds
    limit = wait_limit(lateness[-LATENESS_KEPT:], timing)
    started: set[PeerId] = set()
    last_arrival = announced_at
    number = start.number

    async def fetch(announce: Announce) -> None:
        nonlocal last_arrival
        author = announce.stamp.author
        try:
            weights = await _receive_update(services, view, announce)
        except (TransferError, InvalidMessage) as error:
            services.events.emit(
                "update_rejected", group=view.group_id, round=number, author=str(author), reason=str(error)
            )
            return
        contributions[author] = Contribution(
            author, weights, int(announce.samples), announce.base_hash, announce.label_counts
        )
        progress.contributed.add(author)
        last_arrival = services.clock()

    async with trio.open_nursery() as fetchers:
        while True:
            if unheard is not None and view.topic_peers() > 0:
                await view.publish(unheard)
                unheard = None
            for author, announce in list(view.announces(number).items()):
                if author not in started and author != services.peer_id:
                    started.add(author)
                    progress.announced.add(author)
                    fetchers.start_soon(fetch, announce)
            if view.interrupted():
                fetchers.cancel_scope.cancel()
                return None, last_arrival
            live = view.live()
            decision = close_decision(
                expected=start.expected & live | {services.peer_id},
                contributed=frozenset(contributions),
                live=live,
                waited=services.clock() - announced_at,
                limit=limit,
                timing=timing,
                group_moved_on=view.moved_on(number),
            )
            if decision is not Close.WAIT:
                break
            await view.news(POLL)
        fetchers.cancel_scope.cancel()
    return decision, last_arrival


async def _receive_update(services: Services, view: GroupView, announce: Announce) -> Weights:
    learner = services.learner
    if announce.model_fingerprint != learner.fingerprint:
        raise InvalidMessage(f"model fingerprint {announce.model_fingerprint} differs from ours")
    if announce.inline_blob:
        if content_hash(announce.inline_blob) != announce.content_hash:
            raise InvalidMessage("inline update does not match its hash")
        blob = announce.inline_blob
        services.transfer.store.put(blob)
    else:
        author = announce.stamp.author
        holders = [author] + [p for p in in_peer_order(view.live()) if p not in (author, services.peer_id)]
        ceiling = services.config.timing.rounds.ceiling
        blob = await services.transfer.fetch(
            announce.content_hash,
            announce.size,
            holders,
            deadline=ceiling,
            manifest_hash=announce.manifest_hash or None,
        )
    return tensor_codec.decode(blob, learner.fingerprint, learner.shapes)


async def fetch_vouched(services: Services, target: CatchUp, progress: RoundProgress) -> Weights | None:
    """The model a catch-up target names, from its holders; None when it cannot be had now."""
    phase = progress.phase
    progress.enter("catching up")
    try:
        deadline = services.config.timing.rounds.ceiling / 2
        return await services.fetch_model(target.model_hash, target.holders, deadline=deadline)
    except (TransferError, InvalidMessage) as error:
        log.info("could not adopt the group's model of round %d: %s", target.round, error)
        return None
    finally:
        progress.enter(phase)


async def best_of(
    services: Services, candidates: Sequence[CatchUp], progress: RoundProgress
) -> Weights | None:
    """Of the candidates' models, the one with the lowest loss on our own validation data; None when
    none can be had now (policy/catchup.py: a group that is ahead but holds no one model)."""
    learner = services.learner
    best, best_loss = None, math.inf
    for candidate in candidates:
        model = await fetch_vouched(services, candidate, progress)
        if model is None:
            continue
        loss = (await trio.to_thread.run_sync(learner.evaluate, learner.data.validation, model)).loss
        if loss < best_loss:
            best, best_loss = model, loss
    return best
