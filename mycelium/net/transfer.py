"""Pulling a model blob by content hash: swarming (/mycelium/model/1.1.0), and the older whole pull.

Swarming (`fetch`, BitTorrent-style): the blob is cut into 256 KiB chunks listed in a manifest
(policy/chunks.py). The puller opens a stream to SWARM_PEERS candidate holders at a time (the first
one, the author, always; then the group's other members in random order, the next one whenever one
drops out), learns from each which chunks it has (a bitfield; a member that is pulling the same
blob answers with what it has so far, and answers "what do you have" again once it has more), takes the
manifest from the first that sends one (checked against the manifest hash the author signed in its
UpdateAnnounce, when there is one), and asks each holder for up to REQUEST_CHUNKS chunks at a time,
rarest first, never the same chunk twice except in the endgame. Every chunk is checked against the
manifest on arrival and is served to others from then on; a holder that sends a bad chunk or a bad
manifest is dropped and its chunks are asked of the others. The whole blob's sha256 is checked at
the end as before.

/mycelium/model/1.0.0 (the whole pull, kept so that nodes of the previous version can pull from us
and we from them): one TransferRequest frame in; a TransferResponse frame, then ModelChunk frames
from the requested offset to the end. `fetch` falls back to it when no holder swarmed the blob to
us: it asks the holders in turn and resumes at the same offset from the next one if one dies.
Sizes, concurrency, maps and time are bounded on both protocols.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from mycelium.errors import InvalidMessage, TransferError
from mycelium.net import tuning
from mycelium.net.framing import FrameReader, frame
from mycelium.net.streams import StreamOpener, StreamOpenError, reset_quietly
from mycelium.net.traffic import NetCall, Traffic
from mycelium.policy.chunks import (
    ChunkBook,
    Manifest,
    ManifestError,
    checked_manifest,
    chunk_count,
    decode_bitfield,
    encode_bitfield,
)
from mycelium.policy.peers import PeerId
from mycelium.proto import decode_exact
from mycelium.proto import mycelium_pb2 as pb

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/mycelium/model/1.0.0")
CHUNK_BYTES = 256 * 1024
# Blobs of at most this many bytes are pulled whole over 1.0.0 from the holders in turn (the author
# first): in a round every member pulls every other's update at once, and for a 2-chunk update
# the swarm's extra streams and "not yet" answers cost more than they spread (MNIST's 398 KiB
# updates: 4.95 s a round swarmed against 1.9 s whole; benchmarks/RESULTS.md).
WHOLE_PULL_BYTES = 2 * CHUNK_BYTES
MAX_REQUEST_BYTES = 256
MAX_BLOB_BYTES = 512 * 1024 * 1024
MAX_UPLOADS = 16  # a full group (capacity 10) pulls one update from its author 9 times at once
RETRY_PASSES = 3  # holders that were busy or did not hold the blob yet are asked again
RETRY_DELAY = 0.5
SERVE_TIMEOUT = 120.0
MIN_RATE = 1_000_000  # bytes/s below which a pull is abandoned (after a fixed 10 s allowance)
UNKNOWN_SIZE_LIMIT = 32 * 1024 * 1024  # a pull that names no size (a group's model) takes at most this
FETCH_DEADLINE = 60.0  # one fetch, every holder and retry included

SWARM_PROTOCOL = TProtocol("/mycelium/model/1.1.0")
MAX_CHUNKS_PER_REQUEST = 8
REQUEST_CHUNKS = 4  # asked of one holder at a time: 1 MiB in flight per holder stream
MAX_SWARM_REQUEST_BYTES = 64 + 6 * MAX_CHUNKS_PER_REQUEST
MAX_CHUNKS = chunk_count(MAX_BLOB_BYTES, CHUNK_BYTES)
MAX_SWARM_RESPONSE_BYTES = 256 + 34 * MAX_CHUNKS + MAX_CHUNKS // 8  # manifest, bitfield, the rest
MAX_PARTIALS = 16  # blobs we are pulling and already serve the verified chunks of
MAX_MANIFESTS = 64  # manifests of stored blobs kept (recomputed from the blob when evicted)
HAVE_POLL = 0.02  # a holder with nothing new for us is asked again after this, doubling each time
MAX_HAVE_POLL = 0.32  # ... up to this (polls cost CPU on every member: keep them rare)
SWARM_PEERS = 4  # holders one pull asks at once, the first always among them (the others stand by)
RECEIVE_WINDOW = 4 * 1024 * 1024  # Yamux credit a puller grants each holder stream (py-libp2p: 256 KiB)
STALL_PATIENCE = 5.0  # a holder (not the first) with nothing for us this long makes room for the next
LONG_POLL = 0.5  # a partial holder asked for nothing new answers once it has more, or after this
NOT_READY_PATIENCE = 3.0  # seconds a holder may answer busy or not found before we stop asking it
SWARM_IDLE_TIMEOUT = 30.0  # a serving stream with no request for this long is closed


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

    def put(self, data: bytes, verified_key: bytes | None = None) -> bytes:
        """Store `data` under its content hash; `verified_key` is that hash when the caller has
        just computed it (a pull checks it before it stores), so a blob is hashed once."""
        key = verified_key if verified_key is not None else content_hash(data)
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


@dataclass
class _Partial:
    """A blob being swarmed to us: its verified chunks are served while the rest arrives."""

    manifest: Manifest
    data: bytearray
    held: set[int] = field(default_factory=set)
    grew: trio.Event = field(default_factory=trio.Event)  # set (and replaced) on every new chunk

    def add(self, index: int, offset: int, chunk: bytes) -> None:
        self.data[offset : offset + len(chunk)] = chunk
        self.held.add(index)
        self.grew.set()
        self.grew = trio.Event()


_Holding = tuple[Manifest, "bytes | bytearray", frozenset[int], "_Partial | None"]


@dataclass
class _Swarm:
    """One swarming pull: what the workers (one per holder) share."""

    key: bytes
    size: int | None
    manifest_hash: bytes | None
    excluded: frozenset[PeerId]
    failures: list[str]
    manifest: Manifest | None = None
    manifest_source: PeerId | None = None
    book: ChunkBook | None = None
    partial: _Partial | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)  # the workers' nursery's


class TransferService:
    """Both sides of /mycelium/model/1.1.0 (swarming) and 1.0.0 (whole pulls) for one host.

    It is long because the two protocol versions share the blob store, the upload limit and the
    partial blobs a puller serves while it pulls; splitting puller and server apart is the next
    step (issue 12's closing note)."""

    def __init__(self, host: IHost, opener: StreamOpener, store: BlobStore, traffic: Traffic) -> None:
        self._host = host
        self._opener = opener
        self.store = store
        self._traffic = traffic
        self._uploads = trio.CapacityLimiter(MAX_UPLOADS)
        self._partials: dict[bytes, _Partial] = {}
        self._manifests: OrderedDict[bytes, Manifest] = OrderedDict()
        host.set_stream_handler(PROTOCOL, self._handle)
        host.set_stream_handler(SWARM_PROTOCOL, self._handle_swarm)

    def manifest_hash(self, key: bytes) -> bytes:
        """The manifest hash of stored blob `key` (what an UpdateAnnounce carries); b"" if not held."""
        manifest = self._manifest(key)
        return b"" if manifest is None else manifest.digest()

    def _manifest(self, key: bytes) -> Manifest | None:
        manifest = self._manifests.get(key)
        if manifest is not None:
            self._manifests.move_to_end(key)
            return manifest
        data = self.store.get(key)
        if data is None:
            return None
        manifest = Manifest.of(data, CHUNK_BYTES)
        self._remember_manifest(key, manifest)
        return manifest

    def _remember_manifest(self, key: bytes, manifest: Manifest) -> None:
        self._manifests[key] = manifest
        while len(self._manifests) > MAX_MANIFESTS:
            self._manifests.popitem(last=False)

    async def _serving(self, stream: INetStream, serve: Callable[[], Awaitable[None]], what: str) -> None:
        """Run one stream handler's `serve` within SERVE_TIMEOUT, then close the stream; a bad or
        vanished puller gets its stream reset, and never hurts us."""
        try:
            with trio.fail_after(SERVE_TIMEOUT):
                await serve()
            await stream.close()
        except Exception as error:  # noqa: BLE001 - whatever the puller did
            log.debug("serving %s failed: %s", what, error)
            await reset_quietly(stream)

    async def _handle_swarm(self, stream: INetStream) -> None:
        await self._serving(stream, lambda: self._serve_swarm(stream), "a swarm pull")

    async def _serve_swarm(self, stream: INetStream) -> None:
        if self._uploads.available_tokens == 0:
            response = pb.SwarmResponse(status=pb.SwarmResponse.BUSY)
            await stream.write(frame(response.SerializeToString()))
            return
        async with self._uploads:
            await self._serve_requests(stream)

    async def _serve_requests(self, stream: INetStream) -> None:
        """Answer SwarmRequests until the puller closes the stream or goes quiet."""
        reader = FrameReader(stream)
        key: bytes | None = None
        told: frozenset[int] | None = None
        while True:
            try:
                with trio.fail_after(SWARM_IDLE_TIMEOUT):
                    raw = await reader.read_frame(MAX_SWARM_REQUEST_BYTES)
            except TransferError:  # the puller is done and closed its end
                return
            request = decode_exact(pb.SwarmRequest, raw)
            if key is None:
                key = request.content_hash
            if request.content_hash != key or len(request.chunks) > MAX_CHUNKS_PER_REQUEST:
                response = pb.SwarmResponse(status=pb.SwarmResponse.BAD_REQUEST, error="bad request")
                await stream.write(frame(response.SerializeToString()))
                return
            told = await self._answer(stream, key, request, told)

    def _holding(self, key: bytes) -> _Holding | None:
        """What we can serve of `key`: its manifest, bytes, the chunks held, the partial if incomplete."""
        data = self.store.get(key)
        manifest = self._manifest(key) if data is not None else None
        if data is not None and manifest is not None:
            return manifest, data, frozenset(range(manifest.count)), None
        partial = self._partials.get(key)
        if partial is None:
            return None
        return partial.manifest, partial.data, frozenset(partial.held), partial

    async def _answer(
        self, stream: INetStream, key: bytes, request: pb.SwarmRequest, told: frozenset[int] | None = None
    ) -> frozenset[int] | None:
        """Answer one request; returns the chunks we said we hold. A request for no chunks from a
        puller we already told all we hold waits (up to LONG_POLL) until we hold more: no busy polls."""
        holding = self._holding(key)
        if holding is not None and holding[3] is not None and not request.chunks and holding[2] == told:
            with trio.move_on_after(LONG_POLL):
                await holding[3].grew.wait()
            holding = self._holding(key)
        if holding is None:
            await stream.write(frame(pb.SwarmResponse(status=pb.SwarmResponse.NOT_FOUND).SerializeToString()))
            return None
        manifest, data, held, _ = holding
        response = pb.SwarmResponse(
            status=pb.SwarmResponse.OK,
            total_size=manifest.total_size,
            chunk_size=manifest.chunk_size,
            chunk_hashes=list(manifest.chunk_hashes) if request.want_manifest else [],
            have=encode_bitfield(held, manifest.count),
        )
        frames = [frame(response.SerializeToString())]
        for index in request.chunks:
            if index in held:
                offset, length = manifest.span(index)
                chunk = bytes(data[offset : offset + length])
                frames.append(frame(pb.ModelChunk(offset=offset, data=chunk).SerializeToString()))
                self._traffic.bytes_out += length
        # one write: py-libp2p sends each write as Yamux frames of one Noise message each, so writing
        # frames apart would end every 256 KiB chunk with a tiny frame of its own
        await stream.write(b"".join(frames))
        return held

    async def _handle(self, stream: INetStream) -> None:
        await self._serving(stream, lambda: self._serve(stream), "a model pull")

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
        self,
        key: bytes,
        size: int | None,
        holders: Sequence[PeerId],
        deadline: float = FETCH_DEADLINE,
        manifest_hash: bytes | None = None,
    ) -> bytes:
        """The blob with sha256 `key` (of `size` bytes, if known), swarmed from `holders`, within
        `deadline` seconds in all. `manifest_hash`, from a signed announce, lets every chunk be
        checked as it arrives; without it the whole-blob hash decides (module docstring)."""
        if size is not None and size > MAX_BLOB_BYTES:
            raise TransferError(f"refusing a {size}-byte model: the limit is {MAX_BLOB_BYTES}")
        cached = self.store.get(key)
        if cached is not None:
            return cached
        failures: list[str] = []
        me = PeerId(self._host.get_id().to_bytes())
        candidates = [holder for holder in dict.fromkeys(holders) if holder != me]
        with self._traffic.timed(NetCall.TRANSFER), trio.move_on_after(deadline) as scope:
            if size is not None and size <= WHOLE_PULL_BYTES:
                data = await self._fetch(key, size, candidates, failures)
            else:
                unswarmed: list[PeerId] = []
                data = await self._swarm_fetch(key, size, manifest_hash, candidates, failures, unswarmed)
                if data is None and unswarmed:  # perhaps nodes of the previous version: the whole pull,
                    in_order = [holder for holder in candidates if holder in unswarmed]  # the author first
                    data = await self._fetch(key, size, in_order, failures)
            if data is not None:
                return data
        if scope.cancelled_caught:
            failures.append(f"gave up after {deadline:.0f} s")
        raise TransferError(
            f"could not fetch model {key.hex()[:12]} ({size} bytes): {'; '.join(failures) or 'no holder'}"
        )

    async def _swarm_fetch(
        self,
        key: bytes,
        size: int | None,
        manifest_hash: bytes | None,
        holders: Sequence[PeerId],
        failures: list[str],
        unswarmed: list[PeerId],
    ) -> bytes | None:
        """Swarm the blob from its holders; None when they could not give all of it."""
        excluded: frozenset[PeerId] = frozenset()
        for _ in range(2):  # again only when a manifest taken on trust (none signed) proved false
            pull = _Swarm(key, size, manifest_hash, excluded, failures)
            # the first holder (the author, the leader) always; the others in random order, a few at a
            # time: each stream costs py-libp2p a few ms of CPU to open, on both ends
            rest = [holder for holder in holders[1:] if holder not in excluded]
            random.shuffle(rest)
            slots = trio.Semaphore(SWARM_PEERS - 1)
            try:
                async with trio.open_nursery() as nursery:
                    pull.scope = nursery.cancel_scope
                    for holder in holders[:1]:
                        if holder not in excluded:
                            nursery.start_soon(self._swarm_worker, pull, holder, unswarmed, None)
                    for holder in rest:
                        nursery.start_soon(self._swarm_worker, pull, holder, unswarmed, slots)
                if pull.partial is None or pull.book is None or not pull.book.complete:
                    if manifest_hash is None and pull.book is not None and pull.book.bad:
                        # chunks failed a manifest taken on trust: the manifest may be the lie
                        failures.append("chunks did not match an unsigned manifest")
                        assert pull.manifest_source is not None  # a book exists only with its manifest
                        excluded = excluded | {pull.manifest_source}
                        unswarmed.clear()
                        continue
                    return None
                data = bytes(pull.partial.data)
                if content_hash(data) == key:
                    self.store.put(data, verified_key=key)
                    self._remember_manifest(key, pull.partial.manifest)
                    return data
            finally:
                if pull.partial is not None and self._partials.get(key) is pull.partial:
                    del self._partials[key]
            failures.append("content does not match its hash")
            if manifest_hash is not None or pull.manifest_source is None:
                return None
            excluded = excluded | {pull.manifest_source}
            unswarmed.clear()
        return None

    async def _swarm_worker(
        self, pull: _Swarm, holder: PeerId, unswarmed: list[PeerId], slots: trio.Semaphore | None
    ) -> None:
        """Pull what `holder` has until the blob is complete or the holder fails us."""
        if slots is None:
            await self._swarm_with(pull, holder, unswarmed, stalls=False)
            return
        async with slots:
            await self._swarm_with(pull, holder, unswarmed, stalls=True)

    async def _swarm_with(self, pull: _Swarm, holder: PeerId, unswarmed: list[PeerId], stalls: bool) -> None:
        """`stalls`: give up on a holder that has had nothing for us for STALL_PATIENCE seconds (its
        slot goes to the next holder); never on the first holder, the one sure to have it all."""
        patience = trio.current_time() + NOT_READY_PATIENCE
        while True:
            try:
                stream = await self._opener.open(holder, [SWARM_PROTOCOL])
            except StreamOpenError as error:
                unswarmed.append(holder)  # unreachable, or an older node (the whole pull may work)
                pull.failures.append(f"{holder.short}: {error}")
                return
            try:
                await self._swarm_from(pull, holder, stream, patience, stalls)
                return
            except HolderNotReady as error:
                if trio.current_time() > patience:
                    pull.failures.append(f"{holder.short}: {error}")
                    return
            except (TransferError, InvalidMessage, ManifestError, trio.TooSlowError) as error:
                pull.failures.append(f"{holder.short}: {error or 'too slow'}")
                return
            except Exception as error:  # noqa: BLE001 - libp2p raises many types for a dead peer
                pull.failures.append(f"{holder.short}: {type(error).__name__}")
                return
            finally:
                if pull.book is not None:
                    pull.book.released(holder, list(pull.book.in_flight))
                with trio.CancelScope(shield=True):  # also when the pull is complete and cancels us
                    await reset_quietly(stream)
            await trio.sleep(RETRY_DELAY)  # busy: ask again on a fresh stream

    async def _swarm_from(
        self, pull: _Swarm, holder: PeerId, stream: INetStream, patience: float, stalls: bool
    ) -> None:
        await tuning.grant_receive_window(stream, RECEIVE_WINDOW)
        reader = FrameReader(stream)
        poll, known = HAVE_POLL, -1
        useful_at = trio.current_time()
        while True:
            picks = pull.book.pick(holder, REQUEST_CHUNKS) if pull.book is not None else []
            asking_manifest = pull.manifest is None
            request = pb.SwarmRequest(
                content_hash=pull.key, want_manifest=pull.manifest is None, chunks=picks
            )
            with trio.fail_after(10.0 + REQUEST_CHUNKS * CHUNK_BYTES / MIN_RATE):
                await stream.write(frame(request.SerializeToString()))
                response = decode_exact(pb.SwarmResponse, await reader.read_frame(MAX_SWARM_RESPONSE_BYTES))
                status = pb.SwarmResponse.Status.Name(response.status).lower().replace("_", " ")
                if response.status == pb.SwarmResponse.BUSY:
                    raise HolderNotReady(status)
                if response.status == pb.SwarmResponse.NOT_FOUND:
                    if pull.book is not None:
                        pull.book.released(holder, picks)
                    if trio.current_time() > patience:
                        raise HolderNotReady(status)
                elif response.status != pb.SwarmResponse.OK:
                    raise TransferError(status)
                else:
                    await self._take_chunks(pull, holder, reader, response, picks)
                    if pull.book is not None and pull.book.complete:
                        pull.scope.cancel()
                        return
            offered = len(pull.book.holders.get(holder, ())) if pull.book is not None else -1
            grew = offered > known
            if grew:
                poll, known = HAVE_POLL, offered
            if picks or grew:
                useful_at = trio.current_time()
            elif stalls and trio.current_time() - useful_at > STALL_PATIENCE:
                raise TransferError(f"nothing new for {STALL_PATIENCE:.0f} s")
            # a partial holder waits for news itself (LONG_POLL); one with all or nothing cannot
            complete = pull.manifest is not None and offered == pull.manifest.count
            if response.status != pb.SwarmResponse.OK or (complete and not picks and not asking_manifest):
                await trio.sleep(poll)  # nothing new here yet: ask again in a moment
                poll = min(poll * 2, MAX_HAVE_POLL)

    async def _take_chunks(
        self,
        pull: _Swarm,
        holder: PeerId,
        reader: FrameReader,
        response: pb.SwarmResponse,
        picks: list[int],
    ) -> None:
        manifest = pull.manifest
        if manifest is None:
            manifest = checked_manifest(
                response.chunk_size,
                response.total_size,
                list(response.chunk_hashes),
                expected_hash=pull.manifest_hash,
                expected_size=pull.size,
                max_size=MAX_BLOB_BYTES if pull.size is not None else UNKNOWN_SIZE_LIMIT,
                allowed_chunk_sizes=(CHUNK_BYTES,),
            )
            self._start(pull, manifest, holder)
        if response.total_size != manifest.total_size or response.chunk_size != manifest.chunk_size:
            raise TransferError(f"holder offers {response.total_size} bytes, expected {manifest.total_size}")
        book, partial = pull.book, pull.partial
        assert book is not None and partial is not None
        held = decode_bitfield(response.have, manifest.count)
        book.have(holder, held)
        for index in picks:
            if index not in held:
                book.released(holder, [index])
                continue
            chunk = decode_exact(pb.ModelChunk, await reader.read_frame(CHUNK_BYTES + 64))
            offset, length = manifest.span(index)
            if chunk.offset != offset or not manifest.verifies(index, chunk.data):
                book.corrupt(holder)
                raise TransferError(f"chunk {index} does not match its manifest hash")
            self._traffic.bytes_in += length
            if book.received(holder, index):
                partial.add(index, offset, chunk.data)

    def _start(self, pull: _Swarm, manifest: Manifest, source: PeerId) -> None:
        """The first acceptable manifest: from now on chunks can be checked, stored and served."""
        pull.manifest, pull.manifest_source = manifest, source
        pull.book = ChunkBook(manifest.count, rng=random.Random())
        pull.partial = _Partial(manifest, bytearray(manifest.total_size))
        if pull.key not in self._partials and len(self._partials) < MAX_PARTIALS:
            self._partials[pull.key] = pull.partial

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
                self.store.put(data, verified_key=key)
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
        data = bytes(received)
        if content_hash(data) != key:
            received.clear()
            raise TransferError("content does not match its hash")
        return data

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
            await reset_quietly(stream)
