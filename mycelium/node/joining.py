"""Asking a group to let us in: the joiner's half of /mycelium/join/1.0.0 (the member's half is
node/admission.py).

The joiner asks the entry points in order (a version's leader first, then its other members),
follows redirects to the leader, and takes the version the leader signed when it admitted us: it
comes from a member of the version we asked through, so it is as good as that version. The same
path serves a newcomer, a node resuming after a restart, and a member rejoining its own group
(dropped from the record, on the losing side of a merge, or cut off from the group's gossip).
"""

from __future__ import annotations

from collections.abc import Sequence

from mycelium.errors import InvalidMessage, JoinRefused
from mycelium.net.join import request_join
from mycelium.net.messages import decode_group_record
from mycelium.node.services import Services
from mycelium.policy.messages import JoinRequest, JoinStatus
from mycelium.policy.peers import PeerId, in_peer_order
from mycelium.policy.records import GroupRecord

ADMISSION_DEADLINE = 60.0  # asking every entry point of one attempt, redirects included

EntryPoint = tuple[PeerId, tuple[str, ...]]


def entry_points(record: GroupRecord, me: PeerId) -> list[EntryPoint]:
    """Whom to ask to let us into `record`'s group: its leader first, then the others in peer order."""
    order = [record.leader] + [p for p in in_peer_order(record.member_ids) if p != record.leader]
    return [(p, record.member(p).addrs) for p in order if p != me]  # type: ignore[union-attr]


async def request_admission(services: Services, group_id: str, points: Sequence[EntryPoint]) -> GroupRecord:
    """The version that lists us, from the first entry point (or the leader it names) that admits us.

    JoinRefused(final=True) when the group is full or refuses us; JoinRefused when nobody answered.
    """
    me = services.peer_id
    for peer, addrs in points:
        services.stack.remember_addrs(peer, addrs)
    queue = [peer for peer, _ in points if peer != me]
    asked: set[PeerId] = set()
    request = JoinRequest(
        author=me,
        group_id=group_id,
        model_fingerprint=services.learner.fingerprint,
        invite=services.config.invite,
        addrs=services.addrs(),
        sent_at=services.clock(),
    )
    failures: list[str] = []
    while queue:
        member = queue.pop(0)
        if member in asked:
            continue
        asked.add(member)
        try:
            answer = await request_join(services.stack.opener, services.key_pair, member, request)
        except JoinRefused as error:
            failures.append(str(error))
            continue
        if answer.status is JoinStatus.ADMITTED:
            return _admitted(services, answer.record_raw, group_id)
        if answer.status is JoinStatus.REDIRECT and answer.leader is not None:
            services.stack.remember_addrs(answer.leader, answer.leader_addrs)
            queue.insert(0, answer.leader)
            continue
        if answer.status is JoinStatus.NOT_MEMBER:  # a stale record: ask the next member
            failures.append(f"{member.short} is not in the group")
            continue
        if answer.status is JoinStatus.FULL:
            raise JoinRefused(f"group {group_id} is full", full=True)
        raise JoinRefused(f"group {group_id} refused us: {answer.reason}", final=True)
    raise JoinRefused(f"no member of group {group_id} let us in ({'; '.join(failures)[:300]})")


def _admitted(services: Services, raw: bytes, group_id: str) -> GroupRecord:
    try:
        record = decode_group_record(raw, services.clock(), group_id)
    except InvalidMessage as error:
        raise JoinRefused(f"admission carried an invalid record: {error}") from None
    if services.peer_id not in record.member_ids:
        raise JoinRefused("admission record does not list us")
    return record
