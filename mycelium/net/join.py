"""Stream protocol /mycelium/join/1.0.0: one signed JoinRequest in, one signed JoinResponse out.

The answering member decides (policy/admission.py, via the session); this module only moves and
checks bytes. The request's signer must be the peer at the other end of the (Noise-authenticated)
stream, and the answer's signer the member that was asked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TProtocol

from mycelium.errors import InvalidMessage, JoinRefused, TransferError
from mycelium.net.framing import FrameReader, frame
from mycelium.net.messages import (
    join_answer_from_signed,
    join_answer_to_pb,
    join_request_from_signed,
    join_request_to_pb,
)
from mycelium.net.signing import Kind, open_envelope, seal
from mycelium.net.streams import StreamOpener, StreamOpenError, reset_quietly
from mycelium.policy.messages import JoinAnswer, JoinRequest
from mycelium.policy.peers import PeerId

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/mycelium/join/1.0.0")
MAX_JOIN_BYTES = 64 * 1024
JOIN_TIMEOUT = 10.0

JoinHandler = Callable[[JoinRequest], Awaitable[JoinAnswer]]


def serve_joins(host: IHost, key_pair: KeyPair, decide: JoinHandler) -> None:
    async def handle(stream: INetStream) -> None:
        try:
            with trio.fail_after(JOIN_TIMEOUT):
                remote = PeerId(stream.muxed_conn.peer_id.to_bytes())
                signed = open_envelope(
                    await FrameReader(stream).read_frame(MAX_JOIN_BYTES), Kind.JOIN_REQUEST, MAX_JOIN_BYTES
                )
                if signed.author != remote:
                    raise InvalidMessage("join request signed by another peer than the sender")
                answer = await decide(join_request_from_signed(signed))
                await stream.write(frame(seal(key_pair, Kind.JOIN_RESPONSE, join_answer_to_pb(answer))))
            await stream.close()
        except Exception as error:  # noqa: BLE001 - a bad request must not hurt the member
            log.debug("join request failed: %s", error)
            await reset_quietly(stream)

    host.set_stream_handler(PROTOCOL, handle)


async def request_join(
    opener: StreamOpener, key_pair: KeyPair, member: PeerId, request: JoinRequest
) -> JoinAnswer:
    """Ask `member` to admit us; JoinRefused with the reason when the exchange itself fails."""
    try:
        with trio.fail_after(JOIN_TIMEOUT):
            stream = await opener.open(member, [PROTOCOL], timeout=JOIN_TIMEOUT)
            try:
                await stream.write(frame(seal(key_pair, Kind.JOIN_REQUEST, join_request_to_pb(request))))
                raw = await FrameReader(stream).read_frame(MAX_JOIN_BYTES)
            finally:
                with trio.move_on_after(1):
                    await stream.close()
    except trio.TooSlowError:
        raise JoinRefused(f"member {member.short} did not answer within {JOIN_TIMEOUT:.0f} s") from None
    except (TransferError, InvalidMessage, StreamOpenError) as error:
        raise JoinRefused(f"member {member.short}: {error}") from None
    except Exception as error:  # noqa: BLE001 - unreachable member, protocol not supported, ...
        raise JoinRefused(f"member {member.short} unreachable: {type(error).__name__}") from None
    try:
        signed = open_envelope(raw, Kind.JOIN_RESPONSE, MAX_JOIN_BYTES)
        if signed.author != member:
            raise InvalidMessage("join response signed by another peer than the member asked")
        return join_answer_from_signed(signed)
    except InvalidMessage as error:
        raise JoinRefused(f"member {member.short}: {error}") from None
