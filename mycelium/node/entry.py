"""Entering a group: create one, join one, resume the one of a checkpoint, found a split's half.

Each returns a `GroupSession` ready to run. A newcomer's record is the version the leader signed
when it admitted us (the join answer), and its first model is the one that version names: the
group vouches for it (policy/membership.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import trio

from mycelium.errors import InvalidMessage, JoinRefused, TransferError
from mycelium.learn import Weights
from mycelium.learn import codec as tensor_codec
from mycelium.node import checkpoint
from mycelium.node.checkpoint import Checkpoint
from mycelium.node.discovery import GroupDirectory
from mycelium.node.joining import ADMISSION_DEADLINE, EntryPoint, entry_points, request_admission
from mycelium.node.outcome import SplitPlan
from mycelium.node.services import Services
from mycelium.node.session import GroupSession
from mycelium.policy.peers import in_peer_order
from mycelium.policy.records import GroupRecord, Member, Metrics, group_id_for

log = logging.getLogger(__name__)

PATIENT_ATTEMPTS = 6
RETRY_DELAY = 2.0
GROUP_MODEL_DEADLINE = 30.0


class Entry:
    def __init__(self, services: Services, directory: GroupDirectory) -> None:
        self.services = services
        self.directory = directory

    # --- creating ---------------------------------------------------------------------------------

    def create(
        self,
        model: Weights,
        round_number: int,
        members: Sequence[Member] = (),
        nonce: bytes | None = None,
        policy: object | None = None,
        capacity: int | None = None,
    ) -> GroupSession:
        """Version 1 of a new group that we lead (listing `members` too: a split's half)."""
        services, config = self.services, self.services.config
        now = services.clock()
        nonce = nonce or os.urandom(16)
        me = services.peer_id
        group_id = group_id_for(me, nonce)
        listed = {m.peer_id: m for m in members}
        listed[me] = Member(me, now, now, services.addrs())
        record = GroupRecord(
            group_id=group_id,
            task=config.task,
            name=config.name or f"group-{group_id[:8]}",
            model_fingerprint=services.learner.fingerprint,
            policy=policy or config.policy,  # type: ignore[arg-type]
            capacity=capacity or config.capacity,
            round=round_number,
            members=tuple(listed[p] for p in in_peer_order(listed)),
            metrics=Metrics(samples=len(services.learner.data.train)),
            version=1,
            updated_at=now,
            expires_at=now + config.timing.record_ttl,
            creator=me,
            nonce=nonce,
            leader=me,
            model_hash=services.store_model(model),
        )
        return GroupSession(services, services.sign_record(record), model, round_number, created=True)

    async def advertise(self, session: GroupSession) -> None:
        """Make a group we created findable (after the node can answer join requests for it)."""
        services, record = self.services, session.record
        services.transfer.store.pin("record", record.model_hash)
        await services.publish_discovery(record)  # first: nodes deciding right now hear it at once
        # the DHT in the background: its writes took up to 35 s while a 30-peer mesh formed, and
        # the session (answering joins, heartbeats) must not wait for them
        services.stack.nursery.start_soon(self._write_dht, record)

    async def _write_dht(self, record: GroupRecord) -> None:
        try:
            await self.services.registry.put_group(record)
            await self.services.registry.advertise(record.task, [record.group_id])
        except Exception as error:  # noqa: BLE001 - in the stack's nursery: a failure must not stop the node
            log.info("advertising group %s in the DHT failed: %s", record.group_id, error)

    def found(self, split: SplitPlan) -> GroupSession | None:
        """Our half of a split: its creator creates the group; the others join it (None)."""
        if split.creator != self.services.peer_id:
            return None
        now = self.services.clock()
        members = [Member(p, now, now, split.addrs.get(p, ())[:4]) for p in split.members]
        return self.create(split.model, split.round, members, split.nonce, split.policy, split.capacity)

    # --- joining ----------------------------------------------------------------------------------

    async def join(
        self,
        group_id: str,
        through: Sequence[EntryPoint] = (),
        patient: bool = False,
        carried: Weights | None = None,
    ) -> GroupSession:
        """Join `group_id`, asking `through` first, then the members of the version we heard or read.

        `patient`: keep trying for a while (the group is alive or being founded); JoinRefused when
        it will not let us in (`final`) or nobody answered.
        """
        last = JoinRefused(f"group {group_id} not found in the DHT")
        for attempt in range(PATIENT_ATTEMPTS if patient else 1):
            if attempt:
                await trio.sleep(RETRY_DELAY * attempt)
            points = list(through)
            # the discovery topic hears every version its leader writes, the DHT only some (and a
            # DHT read costs seconds while a big mesh forms): the DHT is asked when we heard none
            # or the first attempt failed
            record = self.directory.get(group_id)
            if record is None or attempt:
                record = await self.services.registry.get_group(group_id) or record
            if record is not None:
                points += [p for p in entry_points(record, self.services.peer_id) if p not in points]
            if not points:
                continue
            try:
                with trio.fail_after(ADMISSION_DEADLINE):
                    admitted = await request_admission(self.services, group_id, points)
            except trio.TooSlowError:
                last = JoinRefused(
                    f"no member of group {group_id} let us in within {ADMISSION_DEADLINE:.0f} s"
                )
                continue
            except JoinRefused as error:
                if error.final:
                    raise
                last = error
                continue
            model, round_number = await self._group_model(admitted, carried)
            return GroupSession(self.services, admitted, model, round_number, created=False)
        raise last

    async def _group_model(self, record: GroupRecord, carried: Weights | None) -> tuple[Weights, int]:
        """The model the admission record names, or ours when it cannot be had (rounds catch up)."""
        services = self.services
        fallback = carried if carried is not None else services.learner.initial_weights()
        if not record.model_hash:
            return fallback, record.round
        try:
            model = await services.fetch_group_model(record, deadline=GROUP_MODEL_DEADLINE)
        except (TransferError, InvalidMessage) as error:
            log.info("group model unavailable (%s); the first round will catch up", error)
            return fallback, record.round
        return model, record.round

    # --- resuming ---------------------------------------------------------------------------------

    async def resume(self, saved: Checkpoint) -> GroupSession | None:
        """Back after a restart: rejoin our group, or carry on its chain alone if nobody answers.

        None when the checkpoint cannot be used (the node then looks for a group).
        """
        services = self.services
        try:
            model = tensor_codec.decode(saved.model, services.learner.fingerprint, services.learner.shapes)
        except InvalidMessage:
            checkpoint.forget(services.config.data_dir)
            return None
        record = saved.record
        try:
            return await self.join(record.group_id, entry_points(record, services.peer_id), carried=model)
        except JoinRefused as error:
            if error.final:
                log.info("group %s will not have us back: %s", record.group_id, error)
                return None
            log.info("resuming group %s alone: %s", record.group_id, error)
        if services.peer_id not in record.member_ids:
            return None
        now = services.clock()
        alone = record.successor(
            now,
            services.config.timing.record_ttl,
            leader=services.peer_id,
            members=(Member(services.peer_id, now, now, services.addrs()),),
            round=saved.round,
            model_hash=services.store_model(model),
        )
        return GroupSession(
            services, services.sign_record(alone), model, saved.round, created=False, advertise=True
        )
