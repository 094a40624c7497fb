"""The model pull protocol between real libp2p hosts (one process, loopback)."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack

import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr

from mycelium.errors import TransferError
from mycelium.net import transfer
from mycelium.net.framing import FrameReader, frame
from mycelium.net.host import build_host
from mycelium.net.streams import NO_VALID_CONNECTIONS, StreamOpener
from mycelium.net.traffic import Traffic
from mycelium.net.transfer import BlobStore, TransferService, content_hash
from mycelium.policy.peers import PeerId
from mycelium.proto import decode_exact
from mycelium.proto import mycelium_pb2 as pb

LOOPBACK = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


def pid(host) -> PeerId:  # type: ignore[no-untyped-def]
    return PeerId(host.get_id().to_bytes())


BLOB = os.urandom(5 * transfer.CHUNK_BYTES + 1234)


class PreviousVersion(TransferService):
    """A node of the previous version: serves only the whole pull (/mycelium/model/1.0.0)."""

    def __init__(self, host, *args):  # type: ignore[no-untyped-def]
        super().__init__(host, *args)
        host.remove_stream_handler(transfer.SWARM_PROTOCOL)


class DiesHalfway(PreviousVersion):
    """Serves the first half of a blob, then vanishes (resets the stream)."""

    async def _serve(self, stream):  # type: ignore[no-untyped-def]
        request = decode_exact(pb.TransferRequest, await FrameReader(stream).read_frame(256))
        data = self.store.get(request.content_hash)
        assert data is not None
        await stream.write(
            frame(
                pb.TransferResponse(status=pb.TransferResponse.OK, total_size=len(data)).SerializeToString()
            )
        )
        for offset in range(0, len(data) // 2, transfer.CHUNK_BYTES):
            await stream.write(
                frame(
                    pb.ModelChunk(
                        offset=offset, data=data[offset : offset + transfer.CHUNK_BYTES]
                    ).SerializeToString()
                )
            )
            self._traffic.bytes_out += len(data[offset : offset + transfer.CHUNK_BYTES])
        raise ConnectionResetError("serving peer died")


class Corrupts(PreviousVersion):
    """Serves a blob with one flipped byte in a chunk."""

    async def _serve(self, stream):  # type: ignore[no-untyped-def]
        request = decode_exact(pb.TransferRequest, await FrameReader(stream).read_frame(256))
        data = bytearray(self.store.get(request.content_hash) or b"")
        data[len(data) // 3] ^= 0xFF
        await stream.write(
            frame(
                pb.TransferResponse(status=pb.TransferResponse.OK, total_size=len(data)).SerializeToString()
            )
        )
        for offset in range(request.offset, len(data), transfer.CHUNK_BYTES):
            await stream.write(
                frame(
                    pb.ModelChunk(
                        offset=offset, data=bytes(data[offset : offset + transfer.CHUNK_BYTES])
                    ).SerializeToString()
                )
            )


async def _hosts(stack: AsyncExitStack, kinds: list[type[TransferService]]):  # type: ignore[no-untyped-def]
    services = []
    for kind in kinds:
        host = build_host(create_new_key_pair())
        await stack.enter_async_context(host.run(LOOPBACK))
        nursery = await stack.enter_async_context(trio.open_nursery())
        services.append((host, kind(host, StreamOpener(host, nursery), BlobStore(), Traffic())))
    puller_host, puller = services[-1]
    for host, _ in services[:-1]:
        await puller_host.connect(info_from_p2p_addr(host.get_addrs()[0]))
    return services


def run(kinds: list[type[TransferService]], scenario):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with AsyncExitStack() as stack:
            services = await _hosts(stack, kinds)
            with trio.fail_after(30):
                return await scenario(services)

    return trio.run(main)


def test_a_blob_is_pulled_in_chunks_and_verified() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (holder_host, holder), (_, puller) = services
        key = holder.store.put(BLOB)
        data = await puller.fetch(key, len(BLOB), [pid(holder_host)])
        return data, puller._traffic.bytes_in, key in puller.store

    data, received, cached = run([TransferService, TransferService], scenario)
    assert data == BLOB and received == len(BLOB) and cached


def test_a_transfer_cut_halfway_resumes_from_another_holder_at_the_same_offset() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (dying_host, dying), (honest_host, honest), (_, puller) = services
        key = dying.store.put(BLOB)
        honest.store.put(BLOB)
        data = await puller.fetch(key, len(BLOB), [pid(dying_host), pid(honest_host)])
        return data, dying._traffic.bytes_out, honest._traffic.bytes_out

    data, from_dying, from_honest = run([DiesHalfway, PreviousVersion, TransferService], scenario)
    assert data == BLOB
    # the dying holder may have written a chunk that never arrived before its reset: count what it sent
    assert from_dying > 0 and from_honest < len(BLOB) <= from_dying + from_honest, "only the rest"


def test_a_transfer_cut_halfway_with_no_other_holder_fails_cleanly() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (dying_host, dying), (_, puller) = services
        key = dying.store.put(BLOB)
        with pytest.raises(TransferError, match="could not fetch"):
            await puller.fetch(key, len(BLOB), [pid(dying_host)])
        return key in puller.store

    assert run([DiesHalfway, TransferService], scenario) is False


def test_a_chunk_with_wrong_content_is_rejected_and_another_holder_is_asked() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (bad_host, bad), (good_host, good), (_, puller) = services
        key = bad.store.put(BLOB)
        good.store.put(BLOB)
        with pytest.raises(TransferError, match="does not match its hash"):
            await puller.fetch(key, len(BLOB), [pid(bad_host)])
        return await puller.fetch(key, len(BLOB), [pid(bad_host), pid(good_host)])

    assert run([Corrupts, PreviousVersion, TransferService], scenario) == BLOB


def test_a_holder_that_gets_the_blob_a_moment_later_is_asked_again() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (holder_host, holder), (_, puller) = services

        async def receive_later() -> None:
            await trio.sleep(transfer.RETRY_DELAY / 2)
            holder.store.put(BLOB)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_later)
            return await puller.fetch(content_hash(BLOB), len(BLOB), [pid(holder_host)])

    assert run([TransferService, TransferService], scenario) == BLOB


def test_more_pullers_than_a_holder_serves_at_once_all_get_the_blob() -> None:
    pullers = transfer.MAX_UPLOADS + 4

    async def scenario(services):  # type: ignore[no-untyped-def]
        (holder_host, holder), *others = services
        key = holder.store.put(BLOB)
        results: list[bytes] = []

        async def pull(service: TransferService) -> None:
            results.append(await service.fetch(key, len(BLOB), [pid(holder_host)]))

        for host, _ in others:
            await host.connect(info_from_p2p_addr(holder_host.get_addrs()[0]))

        async with trio.open_nursery() as nursery:
            for _, service in others:
                nursery.start_soon(pull, service)
        return results

    results = run([TransferService] * (pullers + 1), scenario)
    assert len(results) == pullers and all(r == BLOB for r in results)


def test_unknown_content_oversized_and_mis_sized_requests_fail_cleanly() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (holder_host, holder), (_, puller) = services
        key = holder.store.put(BLOB)
        peer = [pid(holder_host)]
        with pytest.raises(TransferError, match="not found"):
            await puller.fetch(content_hash(b"nothing"), 10, peer)
        with pytest.raises(TransferError, match="limit"):
            await puller.fetch(key, transfer.MAX_BLOB_BYTES + 1, peer)
        with pytest.raises(TransferError, match="offers"):
            await puller.fetch(key, len(BLOB) - 1, peer)
        return True

    assert run([TransferService, TransferService], scenario)


def test_the_blob_store_is_bounded() -> None:
    store = BlobStore(max_blobs=3, max_bytes=10_000)
    keys = [store.put(bytes([i]) * 100) for i in range(5)]
    assert len(store) == 3 and keys[0] not in store and keys[-1] in store
    big = store.put(b"x" * 9_950)  # over max_bytes with any other blob: the older ones go
    assert big in store and len(store) == 1


def test_pinned_blobs_survive_eviction_until_their_role_moves_on() -> None:
    store = BlobStore(max_blobs=2)
    advertised = store.put(b"advertised model")
    store.pin("record", advertised)
    for i in range(5):
        store.put(bytes([i]) * 10)
    assert advertised in store and len(store) == 2
    store.pin("record", store.put(b"newer model"))
    store.put(b"one more")
    assert advertised not in store


def test_a_stream_that_cannot_be_opened_in_time_fails_the_caller_at_the_deadline() -> None:
    """py-libp2p's new_stream cleans up a failed attempt in a shielded, unbounded scope; a wedged
    connection then hangs it for good. The opener must give up on time anyway and drop the peer."""
    from mycelium.net.streams import StreamOpener, StreamOpenError
    from mycelium.policy.peers import PeerId

    released = trio.Event()
    disconnected: list[object] = []

    class WedgedHost:  # the two calls the opener makes, behaving as on a wedged connection
        async def new_stream(self, peer, protocols):  # type: ignore[no-untyped-def]
            with trio.CancelScope(shield=True):
                await released.wait()
            raise ConnectionResetError("gone at last")

        async def disconnect(self, peer):  # type: ignore[no-untyped-def]
            disconnected.append(peer)

        def get_network(self):  # type: ignore[no-untyped-def]
            return self

        def get_connections(self, peer):  # type: ignore[no-untyped-def]
            return []

    async def scenario() -> tuple[float, str]:
        async with trio.open_nursery() as nursery:
            opener = StreamOpener(WedgedHost(), nursery)  # type: ignore[arg-type]
            started = trio.current_time()
            with pytest.raises(StreamOpenError) as caught:
                await opener.open(PeerId(b"\x00\x01peer"), ["/x"], timeout=0.5)
            waited = trio.current_time() - started
            released.set()  # the stuck attempt ends on its own, later
        return waited, str(caught.value)

    waited, message = trio.run(scenario)
    assert waited < 1.0 and "within" in message
    assert len(disconnected) == 1


def test_a_stream_opens_over_a_fresh_dial_while_py_libp2p_still_holds_a_closed_connection() -> None:
    """py-libp2p marks a connection closed before its muxer's close returns and forgets it only
    after; meanwhile its new_stream refuses the peer instead of dialing. Our opener dials."""
    from libp2p.network.exceptions import SwarmException

    async def scenario(services):  # type: ignore[no-untyped-def]
        (holder_host, holder), (puller_host, puller) = services
        key = holder.store.put(BLOB)
        swarm = puller_host.get_network()
        (connection,) = swarm.get_connections(holder_host.get_id())
        connection.event_closed.set()  # the state SwarmConn.close leaves while its muxer closes
        with pytest.raises(SwarmException, match=NO_VALID_CONNECTIONS):
            await puller_host.new_stream(holder_host.get_id(), [transfer.PROTOCOL])
        async with trio.open_nursery() as nursery:
            opener = StreamOpener(puller_host, nursery)
            stream = await opener.open(pid(holder_host), [transfer.PROTOCOL])
            await stream.write(frame(pb.TransferRequest(content_hash=key).SerializeToString()))
            response = decode_exact(pb.TransferResponse, await FrameReader(stream).read_frame(256))
            await stream.close()
        fresh = swarm.get_connections(holder_host.get_id())
        return response.status, connection in fresh, len(fresh)

    status, stale_kept, connections = run([TransferService, TransferService], scenario)
    assert status == pb.TransferResponse.OK and not stale_kept and connections == 1


def test_a_connection_that_closes_while_a_stream_opens_is_dialed_afresh() -> None:
    """The same state, reached after our opener looked (as when a connection closes while
    py-libp2p waits for a stream slot): the opener tries once more over a fresh dial."""

    async def scenario(services):  # type: ignore[no-untyped-def]
        (holder_host, holder), (puller_host, _) = services
        key = holder.store.put(BLOB)
        swarm = puller_host.get_network()
        (connection,) = swarm.get_connections(holder_host.get_id())
        real_new_stream, calls = puller_host.new_stream, []

        async def closing_first(peer, protocols):  # type: ignore[no-untyped-def]
            calls.append(peer)
            if len(calls) == 1:
                connection.event_closed.set()
            return await real_new_stream(peer, protocols)

        puller_host.new_stream = closing_first
        async with trio.open_nursery() as nursery:
            stream = await StreamOpener(puller_host, nursery).open(pid(holder_host), [transfer.PROTOCOL])
            await stream.write(frame(pb.TransferRequest(content_hash=key).SerializeToString()))
            response = decode_exact(pb.TransferResponse, await FrameReader(stream).read_frame(256))
            await stream.close()
        return response.status, len(calls)

    status, calls = run([TransferService, TransferService], scenario)
    assert status == pb.TransferResponse.OK and calls == 2
