"""Splitting a group whose members' data needs different models (clustered FL; policy/split.py).

The leader feeds every round that closed with all members in, from one base, to `split_step`. When
it calls for a split, the leader announces a `SplitNotice` and every member follows it. The half
the leader is in keeps the group id (the leader, or else the first of the half in peer order, writes
the next version without the others); the other half founds a new group whose id every member of it
computes identically (creator: its first member in peer order; nonce: from the old group id and the
round). Each half starts from the FedAvg of its own members' updates of that round.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import trio

from mycelium.learn import Weights
from mycelium.learn.aggregate import aggregate, get_aggregator
from mycelium.learn.train import update_vector
from mycelium.node.outcome import Outcome, SplitPlan
from mycelium.node.round import Contribution, RoundResult, RoundStart
from mycelium.node.services import Services
from mycelium.policy.lifecycle import Ending
from mycelium.policy.messages import SplitNotice
from mycelium.policy.rounds import Close

if TYPE_CHECKING:
    from mycelium.node.session import GroupSession
from mycelium.policy.peers import PeerId, in_peer_order
from mycelium.policy.records import GroupRecord, group_id_for
from mycelium.policy.split import SplitRules, SplitState, split_step


class SplitWatch:
    """The leader's memory of recent bipartitions (policy/split.py's state)."""

    def __init__(self) -> None:
        self.state: SplitState[PeerId] = SplitState()

    async def consider(
        self,
        services: Services,
        group_id: str,
        round_number: int,
        contributions: tuple[Contribution, ...],
        base: Weights,
    ) -> SplitNotice | None:
        """Feed one round's updates (all from `base`); the notice to announce when the group divides."""
        members = [c.author for c in contributions]
        labels = [c.label_counts for c in contributions]
        if len({len(counts) for counts in labels}) != 1 or not labels[0]:
            return None  # without every member's class counts a split cannot be told from label skew

        def vectors() -> np.ndarray:
            return np.stack([update_vector(c.weights, base) for c in contributions])

        updates = await trio.to_thread.run_sync(vectors)
        decision = split_step(self.state, members, updates, np.array(labels), SplitRules())
        self.state = decision.state
        if decision.halves is None:
            return None
        first, second = decision.halves
        stay, leave = (first, second) if services.peer_id in first else (second, first)
        creator = in_peer_order(leave)[0]
        nonce = hashlib.sha256(f"{group_id}:{round_number}:split".encode()).digest()[:16]
        return SplitNotice(
            stamp=services.stamp(),
            group_id=group_id,
            round=round_number,
            stay=tuple(in_peer_order(stay)),
            leave=tuple(in_peer_order(leave)),
            new_group_id=group_id_for(creator, nonce),
            new_creator=creator,
            nonce=nonce,
            separation=decision.separation,
        )


def half_model(
    services: Services, half: frozenset[PeerId], result: RoundResult | None, fallback: Weights
) -> Weights:
    """Our half's updates of the split round, aggregated, when we hold them all; else `fallback`."""
    held = {c.author: c for c in result.contributions} if result is not None else {}
    if result is None or not half <= set(held):
        return fallback
    rule = get_aggregator(services.config.learn.aggregator)
    return aggregate(rule, result.base, [(held[p].weights, held[p].samples) for p in in_peer_order(half)])


def plan_for_leavers(
    notice: SplitNotice, record: GroupRecord, model: Weights, addrs: dict[PeerId, tuple[str, ...]]
) -> SplitPlan:
    return SplitPlan(
        group_id=notice.new_group_id,
        creator=notice.new_creator,
        nonce=notice.nonce,
        members=notice.leave,
        addrs=addrs,
        round=notice.round + 1,
        model=model,
        policy=record.policy,
        capacity=record.capacity,
    )


async def split_if_due(session: GroupSession, result: RoundResult, start: RoundStart) -> None:
    """Leader only: a round with every member in, all from one base, feeds the split policy."""
    services = session.services
    same_base = all(c.base_hash == start.base_hash for c in result.contributions)
    if not (services.config.split and result.closed is Close.ALL_IN and same_base):
        return
    notice = await session.split_watch.consider(
        services, session.group_id, result.number, result.contributions, start.base
    )
    if notice is not None:
        await session.publish(services.seal(notice))
        session.membership.on_split(notice, services.clock())
        follow_split(session, notice)


def follow_split(session: GroupSession, notice: SplitNotice) -> None:
    """Stay with our half (the membership counts the other half as gone), or leave to found the other."""
    services, me = session.services, session.services.peer_id
    result = (
        session.last_result if session.last_result and session.last_result.number == notice.round else None
    )
    half = frozenset(notice.stay if me in notice.stay else notice.leave)
    model = half_model(services, half, result, session.model)
    services.events.emit(
        "split",
        group=session.group_id,
        round=notice.round,
        stay=len(notice.stay),
        leave=len(notice.leave),
        to=session.group_id if me in notice.stay else notice.new_group_id,
        separation=round(notice.separation, 3),
    )
    if me in notice.stay:
        session.model, session.model_hash = model, services.store_model(model)
        session.record_due = session.membership.is_leader
        return
    addrs = {p: session.membership.addrs_of(p) for p in notice.leave}
    plan = plan_for_leavers(notice, session.record, model, addrs)
    session.end(Outcome(Ending.SPLIT, target=plan.group_id, split=plan))
