"""py-libp2p 0.8.1's Noise transport reads, buffered (`apply`, called by `tuning.apply`).

After the handshake every byte a peer receives goes through three Python layers that each copy it
and each ask the layer below for exact sizes: Noise reads a 2-byte length and then the message (two
socket reads a message), `SecureSession` refills a `BytesIO` with what Yamux did not take, and
Yamux's `read_exactly` gathers the frame body into a bytearray and copies it out again. On one
stream that work, not the cipher, was the limit (benchmarks/RESULTS.md, issue 12).

Here, a Noise transport reads the socket in large pieces and cuts the messages out of its own
buffer; a secure session hands out slices of the current plaintext message; and a Yamux frame body
is read with one call. The bytes on the wire, the errors a closed or broken connection raises and
what each read returns are as before: only fewer copies and fewer socket reads are made.

Each buffer belongs to the connection's one reader (Yamux's `handle_incoming`, as in py-libp2p) and
holds at most one socket read beyond the message being cut (`RECEIVE_BYTES`).
"""

from __future__ import annotations

import trio
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.security.noise import io as noise_io
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.yamux import yamux

RECEIVE_BYTES = 256 * 1024  # one socket read: about four full Noise messages
LENGTH_BYTES = noise_io.SIZE_NOISE_MESSAGE_LEN


def apply() -> None:
    """Idempotent; affects every connection of this process read after it."""
    noise_io.NoiseTransportReadWriter.read_msg = _read_noise_message  # type: ignore[method-assign]
    SecureSession.read = _read_plaintext  # type: ignore[method-assign]
    yamux.Yamux._read_data_body = _read_frame_body  # type: ignore[method-assign]


async def _read_noise_message(self: noise_io.NoiseTransportReadWriter, prefix_encoded: bool = False) -> bytes:
    """The next Noise message, decrypted; the socket is read `RECEIVE_BYTES` at a time."""
    received = self.__dict__.setdefault("_received", bytearray())
    while True:
        if len(received) >= LENGTH_BYTES:
            end = LENGTH_BYTES + int.from_bytes(received[:LENGTH_BYTES], noise_io.BYTE_ORDER)
            if len(received) >= end:
                start = LENGTH_BYTES + (len(self.prefix) if prefix_encoded else 0)
                ciphertext = bytes(memoryview(received)[start:end])
                del received[:end]
                return self.decrypt(ciphertext)
        piece = await self.read_writer.read_write_closer.read(RECEIVE_BYTES)
        if not piece:
            raise _closed_while_reading(received)
        received += piece


def _closed_while_reading(received: bytearray) -> IncompleteReadError:
    if len(received) < LENGTH_BYTES:
        expected, got = LENGTH_BYTES, len(received)
    else:
        expected = int.from_bytes(received[:LENGTH_BYTES], noise_io.BYTE_ORDER)
        got = len(received) - LENGTH_BYTES
    return _incomplete(expected, got)


def _incomplete(expected: int, got: int) -> IncompleteReadError:
    """The error py-libp2p's `read_exactly` raises for a connection that ended mid-read."""
    message = f"Connection closed during read operation: expected {expected} bytes but received {got} bytes"
    return IncompleteReadError(message, expected_bytes=expected, received_bytes=got)


async def _read_plaintext(self: SecureSession, n: int | None = None) -> bytes:
    """py-libp2p's `SecureSession.read`: `n` bytes (fewer only if the connection closed after some),
    or with `n` None what is buffered, else the next message."""
    if n == 0:
        return b""
    if n is not None and (buffered := _take_buffered(self, n)) is not None:
        return buffered
    message: bytes = self.__dict__.get("_message", b"")
    offset: int = self.__dict__.get("_offset", 0)
    if n is None:
        if offset < len(message):
            self._message, self._offset = b"", 0
            return message[offset:]
        message = await self.conn.read_msg()
        if message == b"":
            raise ConnectionClosedError("Connection closed")
        return message
    gathered = bytearray(message[offset:])
    self._message, self._offset = b"", 0
    while len(gathered) < n:
        message = await self.conn.read_msg()
        if message == b"":
            if gathered:
                return bytes(gathered)
            raise ConnectionClosedError("Connection closed")
        needed = n - len(gathered)
        if not gathered and len(message) >= needed:
            self._message, self._offset = message, needed
            return message[:needed] if len(message) > needed else message
        gathered += message[:needed]
        if len(message) > needed:
            self._message, self._offset = message, needed
    return bytes(gathered)


def _take_buffered(session: SecureSession, n: int) -> bytes | None:
    """The next `n` bytes of the session's current plaintext message, if it holds that many."""
    message: bytes = session.__dict__.get("_message", b"")
    offset: int = session.__dict__.get("_offset", 0)
    if len(message) - offset < n:
        return None
    session._offset = offset + n
    return message[offset : offset + n]


async def _read_frame_body(self: yamux.Yamux, length: int) -> bytes:
    """py-libp2p's `_read_data_body` (exactly `length` bytes, bounded by its timeout), in one read."""
    session = self.secured_conn
    if not isinstance(session, SecureSession):
        return await _original_read_data_body(self, length)
    buffered = _take_buffered(session, length)
    if buffered is not None:  # the usual case: header and body came in one Noise message
        return buffered
    with trio.fail_after(yamux._yamux_data_read_timeout()):  # noqa: SLF001
        body = await session.read(length)
    if len(body) < length:
        raise _incomplete(length, len(body))
    return body


_original_read_data_body = yamux.Yamux._read_data_body
