"""Stream protocol /mycelium/model/1.0.0: pull a model blob by content hash, in chunks.

Server: one TransferRequest frame in; a TransferResponse frame, then ModelChunk frames from the
requested offset to the end. Client (`fetch`): asks the holders in turn; if one dies mid-transfer it
resumes at the same offset from the next; the whole blob must hash to the requested sha256, else it
is discarded and the next holder is asked from the start. Sizes, concurrency and time are bounded.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from mycelium.errors import InvalidMessage, TransferError
from mycelium.net.framing import FrameReader, frame
from mycelium.net.streams import StreamOpener, StreamOpenError
from mycelium.net.traffic import NetCall, Traffic
from mycelium.policy.peers import PeerId
from mycelium.proto import decode_exact
from mycelium.proto import mycelium_pb2 as pb

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/mycelium/model/1.0.0")
CHUNK_BYTES = 256 * 1024
MAX_REQUEST_BYTES = 256
MAX_BLOB_BYTES = 512 * 1024 * 1024
MAX_UPLOADS = 16  # a full group (capacity 10) pulls one update from its author 9 times at once
RETRY_PASSES = 3  # holders that were busy or did not hold the blob yet are asked again
RETRY_DELAY = 0.5
SERVE_TIMEOUT = 120.0
MIN_RATE = 1_000_000  # bytes/s below which a pull is abandoned (after a fixed 10 s allowance)
UNKNOWN_SIZE_LIMIT = 32 * 1024 * 1024  # a pull that names no size (a group's model) takes at most this
FETCH_DEADLINE = 60.0  # one fetch, every holder and retry included


def content_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class HolderNotReady(TransferError):
    """The holder is serving too many pulls, or has not got the blob yet: worth asking again."""


class BlobStore:
    """Content-addressed blobs, least recently used evicted past `max_blobs` or `max_bytes`.

    A blob we advertised (in a group record or a heartbeat) is pinned under that role until the
    role points elsewhere, so peers can still pull what we told them we hold.
    """

    def __init__(self, max_blobs: int = 64, max_bytes: int = 1 << 30) -> None:
        self._blobs: OrderedDict[bytes, bytes] = OrderedDict()
        self._max_blobs = max_blobs
        self._max_bytes = max_bytes
        self._bytes = 0
        self._pins: dict[str, bytes] = {}

    def pin(self, role: str, key: bytes) -> None:
        self._pins[role] = key

    def put(self, data: bytes) -> bytes:
        key = content_hash(data)
        if key in self._blobs:
            self._blobs.move_to_end(key)
            return key
        self._blobs[key] = data
        self._bytes += len(data)
        self._evict(keep=key)
        return key

    def _evict(self, keep: bytes) -> None:
        pinned = set(self._pins.values()) | {keep}
        for candidate in list(self._blobs):
            if len(self._blobs) <= self._max_blobs and self._bytes <= self._max_bytes:
                return
            if candidate not in pinned:
                self._bytes -= len(self._blobs.pop(candidate))

    def get(self, key: bytes) -> bytes | None:
        data = self._blobs.get(key)
        if data is not None:
            self._blobs.move_to_end(key)
        return data

    def __contains__(self, key: bytes) -> bool:
        return key in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)


class TransferService:
    def __init__(self, host: IHost, opener: StreamOpener, store: BlobStore, traffic: Traffic) -> None:
        self._host = host
        self._opener = opener
        self.store = store
        self._traffic = traffic
        self._uploads = trio.CapacityLimiter(MAX_UPLOADS)
        host.set_stream_handler(PROTOCOL, self._handle)

    async def _handle(self, stream: INetStream) -> None:
        try:
            with trio.fail_after(SERVE_TIMEOUT):
                await self._serve(stream)
            await stream.close()
        except Exception as error:  # noqa: BLE001 - a bad or vanished puller must not hurt us
            log.debug("serving a model pull failed: %s", error)
            await _reset_quietly(stream)

    async def _serve(self, stream: INetStream) -> None:
        request = decode_exact(pb.TransferRequest, await FrameReader(stream).read_frame(MAX_REQUEST_BYTES))
        data = self.store.get(request.content_hash)
        if data is None:
            await stream.write(
                frame(pb.TransferResponse(status=pb.TransferResponse.NOT_FOUND).SerializeToString())
            )
            return
        if request.offset > len(data):
            response = pb.TransferResponse(status=pb.TransferResponse.BAD_REQUEST, error="offset past end")
            await stream.write(frame(response.SerializeToString()))
            return
        if self._uploads.available_tokens == 0:
            await stream.write(
                frame(pb.TransferResponse(status=pb.TransferResponse.BUSY).SerializeToString())
            )
            return
        async with self._uploads:
            response = pb.TransferResponse(status=pb.TransferResponse.OK, total_size=len(data))
            await stream.write(frame(response.SerializeToString()))
            for offset in range(request.offset, len(data), CHUNK_BYTES):
                chunk = data[offset : offset + CHUNK_BYTES]
                await stream.write(frame(pb.ModelChunk(offset=offset, data=chunk).SerializeToString()))
                self._traffic.bytes_out += len(chunk)

    async def fetch(
        self, key: bytes, size: int | None, holders: Sequence[PeerId], deadline: float = FETCH_DEADLINE
    ) -> bytes:
        """The blob with sha256 `key` (of `size` bytes, if known) from the first holder able to serve
        it, within `deadline` seconds in all."""
        if size is not None and size > MAX_BLOB_BYTES:
            raise TransferError(f"refusing a {size}-byte model: the limit is {MAX_BLOB_BYTES}")
        cached = self.store.get(key)
        if cached is not None:
            return cached
        failures: list[str] = []
        with self._traffic.timed(NetCall.TRANSFER), trio.move_on_after(deadline) as scope:
            data = await self._fetch(key, size, holders, failures)
            if data is not None:
                return data
        if scope.cancelled_caught:
            failures.append(f"gave up after {deadline:.0f} s")
        raise TransferError(
            f"could not fetch model {key.hex()[:12]} ({size} bytes): {'; '.join(failures) or 'no holder'}"
        )

    async def _fetch(
        self, key: bytes, size: int | None, holders: Sequence[PeerId], failures: list[str]
    ) -> bytes | None:
        received = bytearray()
        me = PeerId(self._host.get_id().to_bytes())
        others = [ID(holder.raw) for holder in dict.fromkeys(holders) if holder != me]
        for attempt in range(RETRY_PASSES):
            not_ready: list[ID] = []
            for holder in others:
                try:
                    data = await self._pull_verified(holder, key, size, received)
                except TransferError as error:
                    failures.append(f"{str(holder)[-8:]}: {error}")
                    if isinstance(error, HolderNotReady):
                        not_ready.append(holder)
                    continue
                self.store.put(data)
                return data
            others = not_ready
            if not others or attempt == RETRY_PASSES - 1:
                break
            await trio.sleep(RETRY_DELAY * (attempt + 1))
        return None

    async def _pull_verified(self, holder: ID, key: bytes, size: int | None, received: bytearray) -> bytes:
        """The whole blob from one holder, resuming at `received`; any failure is a TransferError."""
        try:
            with trio.fail_after(10.0 + (size or 0) / MIN_RATE) as scope:
                await self._pull(holder, key, size, received, scope)
        except HolderNotReady:
            raise
        except (TransferError, InvalidMessage, StreamOpenError, trio.TooSlowError) as error:
            raise TransferError(str(error) or "too slow") from None
        except Exception as error:  # noqa: BLE001 - libp2p raises many types for a dead peer
            raise TransferError(type(error).__name__) from None
        if content_hash(bytes(received)) != key:
            received.clear()
            raise TransferError("content does not match its hash")
        return bytes(received)

    async def _pull(
        self, holder: ID, key: bytes, size: int | None, received: bytearray, scope: trio.CancelScope
    ) -> None:
        """Pull from `received`'s length to the end; a size learned from the holder extends `scope`."""
        stream = await self._opener.open(PeerId(holder.to_bytes()), [PROTOCOL])
        try:
            request = pb.TransferRequest(content_hash=key, offset=len(received))
            await stream.write(frame(request.SerializeToString()))
            reader = FrameReader(stream)
            response = decode_exact(pb.TransferResponse, await reader.read_frame(MAX_REQUEST_BYTES + 256))
            if response.status in (pb.TransferResponse.BUSY, pb.TransferResponse.NOT_FOUND):
                raise HolderNotReady(
                    pb.TransferResponse.Status.Name(response.status).lower().replace("_", " ")
                )
            if response.status != pb.TransferResponse.OK:
                raise TransferError(
                    pb.TransferResponse.Status.Name(response.status).lower().replace("_", " ")
                )
            if size is None:
                if response.total_size > UNKNOWN_SIZE_LIMIT:
                    raise TransferError(f"holder offers {response.total_size} bytes, over our limit")
                size = response.total_size
                scope.deadline += size / MIN_RATE
            if response.total_size != size or size > MAX_BLOB_BYTES:
                raise TransferError(f"holder offers {response.total_size} bytes, expected {size}")
            while len(received) < size:
                chunk = decode_exact(pb.ModelChunk, await reader.read_frame(CHUNK_BYTES + 64))
                if chunk.offset != len(received) or len(received) + len(chunk.data) > size:
                    raise TransferError("chunk out of order")
                received += chunk.data
                self._traffic.bytes_in += len(chunk.data)
        finally:
            await _reset_quietly(stream)


async def _reset_quietly(stream: INetStream) -> None:
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except Exception as error:  # noqa: BLE001 - already gone
            log.debug("stream reset: %s", error)
