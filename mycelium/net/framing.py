"""Length-prefixed frames on a libp2p stream: unsigned varint length, then that many bytes.

The declared length is checked against a cap before anything is allocated; a stream that ends
mid-frame raises `TransferError`. Streams' `read(n)` returns up to n bytes, so reads are buffered.
"""

from __future__ import annotations

from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamError

from mycelium.errors import InvalidMessage, TransferError

MAX_VARINT_BYTES = 10
READ_SIZE = 1 << 18


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def frame(payload: bytes) -> bytes:
    return encode_varint(len(payload)) + payload


class FrameReader:
    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def _fill(self) -> None:
        try:
            data = await self._stream.read(READ_SIZE)
        except StreamError as error:  # EOF and reset are both StreamError subclasses
            raise TransferError(f"stream ended: {type(error).__name__}") from None
        if not data:
            raise TransferError("stream ended")
        self._buffer += data

    async def read_frame(self, max_bytes: int) -> bytes:
        length, shift, used = 0, 0, 0
        while True:
            while used >= len(self._buffer):
                await self._fill()
            byte = self._buffer[used]
            used += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if used >= MAX_VARINT_BYTES:
                raise InvalidMessage("frame length prefix is not a valid varint")
        if length > max_bytes:
            raise InvalidMessage(f"frame of {length} bytes exceeds the limit of {max_bytes}")
        while len(self._buffer) < used + length:
            await self._fill()
        payload = bytes(self._buffer[used : used + length])
        del self._buffer[: used + length]
        return payload
