"""Answering a join request for the group we are in (the decision itself: policy/admission.py).

Only the leader admits, one admission at a time (so the group never outgrows its capacity); it
answers with the new version that lists the newcomer. Other members send the newcomer to the
leader. A member already listed gets the version we hold, as its leader signed it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mycelium.net.invites import invite_problem
from mycelium.net.traffic import Refusal
from mycelium.policy.admission import Verdict
from mycelium.policy.messages import JoinAnswer, JoinRequest, JoinStatus

if TYPE_CHECKING:
    from mycelium.node.session import GroupSession


async def answer_join(session: GroupSession, request: JoinRequest) -> JoinAnswer:
    """Every answer but an admission is given at once; admissions wait for each other, and the
    request is judged again when its turn comes (a herd of newcomers hears "full" without waiting
    behind the admissions: seen in a 30-peer mesh, 8 s for a refusal)."""
    answer = _answer_without_admitting(session, request)
    if answer is not None:
        return answer
    async with session.admission:
        answer = _answer_without_admitting(session, request)  # the group may have filled meanwhile
        return answer if answer is not None else await _admit(session, request)


def _answer_without_admitting(session: GroupSession, request: JoinRequest) -> JoinAnswer | None:
    """The answer to `request`, or None when the verdict is to admit it."""
    services, membership = session.services, session.membership
    now = services.clock()
    if not session.freshness.in_window(request.sent_at, now):
        services.traffic.refused(Refusal.STALE)
        return JoinAnswer(JoinStatus.REFUSED, reason="request dated outside the freshness window")
    problem = None
    if request.invite:
        problem = invite_problem(request.invite, session.group_id, request.author, membership.listed, now)
    verdict = membership.judge_join(
        request.author,
        fingerprint_matches=request.model_fingerprint == membership.record.model_fingerprint,
        invite_presented=bool(request.invite),
        invite_problem=problem,
        now=now,
    )
    if verdict is Verdict.ADMIT:
        return None
    if verdict is Verdict.REDIRECT:
        leader = membership.leader
        return JoinAnswer(
            JoinStatus.REDIRECT, reason=verdict.value, leader=leader, leader_addrs=membership.addrs_of(leader)
        )
    if verdict is Verdict.ALREADY_MEMBER:
        membership.heard_from(request.author, request.addrs, now)
        return JoinAnswer(JoinStatus.ADMITTED, record_raw=membership.record.signed)
    status = JoinStatus.FULL if verdict is Verdict.FULL else JoinStatus.REFUSED
    services.traffic.refused(Refusal.JOIN_REFUSED)
    reason = verdict.value + (f": {problem}" if verdict is Verdict.BAD_INVITE else "")
    return JoinAnswer(status, reason=reason)


async def _admit(session: GroupSession, request: JoinRequest) -> JoinAnswer:
    services, membership = session.services, session.membership
    members = membership.members_to_list(services.clock()) | {request.author}
    record = session.writer.write(members, {request.author: request.addrs})
    services.stack.remember_addrs(request.author, request.addrs)
    await session.writer.spread(record)
    return JoinAnswer(JoinStatus.ADMITTED, record_raw=record.signed)
