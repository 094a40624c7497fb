"""Stream protocol /mycelium/join/1.0.0: one signed JoinRequest in, one signed JoinResponse out.

The answering member decides (see policy/admission.py); this module only moves and checks bytes.
The request's signer must be the peer at the other end of the (Noise-authenticated) stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from mycelium.errors import InvalidMessage, JoinRefused, TransferError
from mycelium.net.framing import FrameReader, frame
from mycelium.net.signing import Kind, Signed, open_envelope, seal
from mycelium.proto import mycelium_pb2 as pb

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/mycelium/join/1.0.0")
MAX_JOIN_BYTES = 64 * 1024
JOIN_TIMEOUT = 10.0

JoinHandler = Callable[[ID, pb.JoinRequest], Awaitable[pb.JoinResponse]]


def serve_joins(host: IHost, key_pair: KeyPair, decide: JoinHandler) -> None:
    async def handle(stream: INetStream) -> None:
        try:
            with trio.fail_after(JOIN_TIMEOUT):
                remote = stream.muxed_conn.peer_id
                signed = open_envelope(
                    await FrameReader(stream).read_frame(MAX_JOIN_BYTES), Kind.JOIN_REQUEST, MAX_JOIN_BYTES
                )
                if signed.author != remote:
                    raise InvalidMessage("join request signed by another peer than the sender")
                response = await decide(remote, signed.decode(pb.JoinRequest))
                await stream.write(frame(seal(key_pair, Kind.JOIN_RESPONSE, response)))
            await stream.close()
        except Exception as error:  # noqa: BLE001 - a bad request must not hurt the member
            log.debug("join request failed: %s", error)
            with trio.move_on_after(1):
                try:
                    await stream.reset()
                except Exception:  # noqa: BLE001 - already gone
                    pass

    host.set_stream_handler(PROTOCOL, handle)


async def request_join(
    host: IHost, key_pair: KeyPair, member: ID, request: pb.JoinRequest
) -> tuple[Signed, pb.JoinResponse]:
    """Ask `member` to admit us; JoinRefused with the reason when the exchange itself fails."""
    try:
        with trio.fail_after(JOIN_TIMEOUT):
            stream = await host.new_stream(member, [PROTOCOL])
            try:
                await stream.write(frame(seal(key_pair, Kind.JOIN_REQUEST, request)))
                raw = await FrameReader(stream).read_frame(MAX_JOIN_BYTES)
            finally:
                with trio.move_on_after(1):
                    await stream.close()
    except trio.TooSlowError:
        raise JoinRefused(f"member {member} did not answer within {JOIN_TIMEOUT:.0f} s") from None
    except (TransferError, InvalidMessage) as error:
        raise JoinRefused(f"member {member}: {error}") from None
    except Exception as error:  # noqa: BLE001 - unreachable member, protocol not supported, ...
        raise JoinRefused(f"member {member} unreachable: {type(error).__name__}") from None
    signed = open_envelope(raw, Kind.JOIN_RESPONSE, MAX_JOIN_BYTES)
    if signed.author != member:
        raise JoinRefused("join response signed by another peer than the member asked")
    return signed, signed.decode(pb.JoinResponse)
