"""Stream protocol /mycelium/groups/1.0.0: ask a peer which groups it knows for a task.

One `GroupsQuery` (task, limit) in, one `GroupsAnswer` out: the signed group records the peer
believes, newest first. A newcomer learns of its task's groups in one round trip to the peers it is
connected to, instead of two DHT lookups (the index, then every record) that took 9-14 s while a
30-peer mesh formed. Nothing here is trusted: every record is checked as if it came from the DHT
(net/messages.decode_group_record) and then goes through the directory's version order
(policy/records.believe). A peer that answers nothing, lies or stalls costs one bounded wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol

from mycelium.net.framing import FrameReader, frame
from mycelium.net.messages import MAX_GROUP_RECORD_BYTES
from mycelium.net.streams import StreamOpener, close_quietly, reset_quietly
from mycelium.policy.peers import PeerId
from mycelium.proto import decode_exact
from mycelium.proto import mycelium_pb2 as pb

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/mycelium/groups/1.0.0")
MAX_SHARED_RECORDS = 32
MAX_QUERY_BYTES = 1024
MAX_ANSWER_BYTES = MAX_SHARED_RECORDS * MAX_GROUP_RECORD_BYTES + 1024
SERVE_TIMEOUT = 5.0
ASK_TIMEOUT = 3.0

RecordsFor = Callable[[str], list[bytes]]  # task -> signed records, newest first


def serve_groups(host: IHost, records_for: RecordsFor) -> None:
    """Answer GroupsQuery with up to `MAX_SHARED_RECORDS` of `records_for(task)`."""

    async def handle(stream: INetStream) -> None:
        try:
            with trio.fail_after(SERVE_TIMEOUT):
                query = decode_exact(pb.GroupsQuery, await FrameReader(stream).read_frame(MAX_QUERY_BYTES))
                limit = min(query.limit or MAX_SHARED_RECORDS, MAX_SHARED_RECORDS)
                answer = pb.GroupsAnswer(records=records_for(query.task)[:limit])
                await stream.write(frame(answer.SerializeToString()))
            await stream.close()
        except Exception as error:  # noqa: BLE001 - a bad query must not hurt us
            log.debug("groups query failed: %s", error)
            await reset_quietly(stream)

    host.set_stream_handler(PROTOCOL, handle)


async def ask_groups(
    opener: StreamOpener, peer: PeerId, task: str, timeout: float = ASK_TIMEOUT
) -> list[bytes]:
    """The signed records `peer` shares for `task`, unchecked; [] when it does not answer in time,
    does not speak the protocol, or answers something else."""
    query = pb.GroupsQuery(task=task, limit=MAX_SHARED_RECORDS)
    with trio.move_on_after(timeout):
        try:
            stream = await opener.open(peer, [PROTOCOL], timeout=timeout)
            try:
                await stream.write(frame(query.SerializeToString()))
                raw = await FrameReader(stream).read_frame(MAX_ANSWER_BYTES)
            finally:
                await close_quietly(stream)
            return list(decode_exact(pb.GroupsAnswer, raw).records)[:MAX_SHARED_RECORDS]
        except Exception as error:  # noqa: BLE001 - unreachable, foreign, or a bad answer
            log.debug("groups query to %s failed: %s", peer.short, error)
    return []
