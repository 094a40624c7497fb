"""Our buffered Noise reads (net/secure_io.py) over a real socket pair and py-libp2p's own Noise
handshake: messages cut out of any socket read boundaries, `SecureSession.read` as py-libp2p defines
it, and the errors a closed connection raises."""

from __future__ import annotations

import os

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.io.exceptions import IncompleteReadError
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.security.noise import io as noise_io
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.secure_session import SecureSession

from mycelium.net import secure_io, tuning
from mycelium.net.host import build_host

tuning.apply()  # the sessions below are built without a host


async def _session_pair() -> tuple[SecureSession, SecureSession, trio.SocketStream]:
    """A Noise session each way over one socket pair; also the sender's socket, for raw writes."""
    left, right = trio.socket.socketpair()
    sender_socket, receiver_socket = trio.SocketStream(left), trio.SocketStream(right)
    keys = create_new_key_pair(), create_new_key_pair()
    transports = [NoiseTransport(pair, noise_privkey=create_x25519_key_pair().private_key) for pair in keys]
    sessions: dict[str, SecureSession] = {}

    async def outbound() -> None:
        raw = RawConnection(TrioTCPStream(sender_socket), initiator=True)
        sessions["sender"] = await transports[0].secure_outbound(raw, ID.from_pubkey(keys[1].public_key))

    async def inbound() -> None:
        raw = RawConnection(TrioTCPStream(receiver_socket), initiator=False)
        sessions["receiver"] = await transports[1].secure_inbound(raw)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbound)
        nursery.start_soon(inbound)
    return sessions["sender"], sessions["receiver"], sender_socket


def _framed(sender: SecureSession, plaintext: bytes) -> bytes:
    """One Noise message as it goes on the wire: 2-byte length, ciphertext."""
    ciphertext = sender.conn.encrypt(plaintext)
    return len(ciphertext).to_bytes(noise_io.SIZE_NOISE_MESSAGE_LEN, "big") + ciphertext


def _run(scenario) -> object:  # type: ignore[no-untyped-def]
    async def main() -> object:
        with trio.fail_after(10):
            return await scenario(*await _session_pair())

    return trio.run(main)


def test_building_a_host_applies_our_noise_reads() -> None:
    build_host(create_new_key_pair())
    assert noise_io.NoiseTransportReadWriter.read_msg is secure_io._read_noise_message  # noqa: SLF001
    assert SecureSession.read is secure_io._read_plaintext  # noqa: SLF001


@pytest.mark.parametrize(
    "piece_bytes",
    [1, 2, 3, 7, 4096, 65537, secure_io.RECEIVE_BYTES + 5],
    ids=lambda size: f"socket writes of {size} bytes",
)
def test_messages_are_cut_out_of_any_socket_read_boundaries(piece_bytes: int) -> None:
    messages = [os.urandom(size) for size in (1, 17, noise_io.MAX_PLAINTEXT_LENGTH, 0, 12, 40_000)]

    async def scenario(sender, receiver, sender_socket) -> list[bytes]:  # type: ignore[no-untyped-def]
        wire = b"".join(_framed(sender, message) for message in messages)

        async def write_in_pieces() -> None:
            for start in range(0, len(wire), piece_bytes):
                await sender_socket.send_all(wire[start : start + piece_bytes])
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_in_pieces)
            return [await receiver.conn.read_msg() for _ in messages]

    assert _run(scenario) == messages


@pytest.mark.parametrize(
    ("reads", "expected"),
    [
        ([12, 65507], [b"h" * 12, b"b" * 65507]),  # a Yamux header, then its body from the same message
        ([5, None], [b"h" * 5, b"h" * 7 + b"b" * 65507]),  # None: the rest of the buffered message
        ([65519 + 3], [b"h" * 12 + b"b" * 65507 + b"abc"]),  # one read across two messages
        ([None, None], [b"h" * 12 + b"b" * 65507, b"abc"]),  # None: the next message, whole
        ([65519, 3], [b"h" * 12 + b"b" * 65507, b"abc"]),
    ],
    ids=["header then body", "rest of a message", "across messages", "whole messages", "exact sizes"],
)
def test_a_secure_session_reads_as_py_libp2p_defines(reads: list[int | None], expected: list[bytes]) -> None:
    async def scenario(sender, receiver, _socket) -> list[bytes]:  # type: ignore[no-untyped-def]
        await sender.write(b"h" * 12 + b"b" * 65507)
        await sender.write(b"abc")
        return [await receiver.read(size) for size in reads]

    assert _run(scenario) == expected


def test_a_clean_close_between_messages_reads_as_a_clean_close() -> None:
    async def scenario(sender, receiver, sender_socket) -> IncompleteReadError:  # type: ignore[no-untyped-def]
        await sender.write(b"last")
        await sender_socket.aclose()
        assert await receiver.read(4) == b"last"
        with pytest.raises(IncompleteReadError) as closed:
            await receiver.read(12)
        return closed.value

    error = _run(scenario)
    assert error.is_clean_close  # Yamux then ends the connection quietly, as with py-libp2p's reads


def test_a_close_inside_a_message_says_how_much_of_it_came() -> None:
    async def scenario(sender, receiver, sender_socket) -> IncompleteReadError:  # type: ignore[no-untyped-def]
        wire = _framed(sender, b"x" * 1000)
        await sender_socket.send_all(wire[:500])
        await sender_socket.aclose()
        with pytest.raises(IncompleteReadError) as cut:
            await receiver.read(12)
        return cut.value

    error = _run(scenario)
    assert (error.expected_bytes, error.received_bytes) == (1016, 498)
    assert not error.is_clean_close


def test_a_forged_message_is_refused_and_not_returned() -> None:
    async def scenario(sender, receiver, sender_socket) -> None:  # type: ignore[no-untyped-def]
        wire = bytearray(_framed(sender, b"payload"))
        wire[-1] ^= 1
        await sender_socket.send_all(bytes(wire))
        await receiver.read(7)

    with pytest.raises(Exception, match="authentication"):
        _run(scenario)
