"""Swarming a blob between real libp2p hosts (one process, loopback), production defaults."""

from __future__ import annotations

import os

import pytest
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH
from libp2p.stream_muxer.yamux import yamux
from test_transfer import PreviousVersion, pid, run

from mycelium.errors import TransferError
from mycelium.net import transfer
from mycelium.net.transfer import TransferService
from mycelium.policy.chunks import Manifest

BLOB = os.urandom(12 * transfer.CHUNK_BYTES + 4321)


class CorruptChunks(TransferService):
    """Holds the honest manifest but serves every chunk with a flipped byte."""

    def hold_corrupted(self, blob: bytes) -> bytes:
        key = self.store.put(blob)
        self.manifest_hash(key)  # the honest manifest, cached
        self.store._blobs[key] = bytes(b ^ 0xFF for b in blob[:1]) + blob[1:]  # noqa: SLF001
        return key


class DiesAfterTwoChunks(TransferService):
    """Serves two chunks, then every stream of it breaks (as a process killed mid-transfer)."""

    served = 0

    async def _answer(self, stream, key, request, told=None):  # type: ignore[no-untyped-def]
        if self.served >= 2:
            raise ConnectionResetError("holder died")
        self.served += len(request.chunks)
        return await super()._answer(stream, key, request, told)


class LiesAboutTheManifest(TransferService):
    """Serves another blob of the same size under the requested hash, with that blob's own manifest."""

    def hold_forgery(self, honest_key: bytes, forged: bytes) -> None:
        self.store._blobs[honest_key] = forged  # noqa: SLF001
        self._remember_manifest(honest_key, Manifest.of(forged, transfer.CHUNK_BYTES))


class OffersAForgedManifestOnly(TransferService):
    """Says it is pulling the blob (a partial with another blob's manifest) and never gets a chunk."""

    def hold_forged_partial(self, honest_key: bytes, forged: bytes) -> None:
        manifest = Manifest.of(forged, transfer.CHUNK_BYTES)
        self._partials[honest_key] = transfer._Partial(manifest, bytearray(len(forged)))  # noqa: SLF001


class SlowToAnswerFirst(TransferService):
    """An honest holder whose first answer comes late (so another holder's manifest comes first)."""

    answered = 0

    async def _answer(self, stream, key, request, told=None):  # type: ignore[no-untyped-def]
        self.answered += 1
        if self.answered == 1:
            await trio.sleep(0.5)
        return await super()._answer(stream, key, request, told)


def served(service: TransferService) -> int:
    return service._traffic.bytes_out  # noqa: SLF001


async def pull_from_every_holder(services):  # type: ignore[no-untyped-def]
    """Every service but the last holds BLOB; the last pulls it, holders listed in order. The blob
    and what each holder sent."""
    *holders, (_, puller) = services
    for _, holder in holders:
        key = holder.store.put(BLOB)
    manifest = holders[0][1].manifest_hash(key)
    data = await puller.fetch(key, len(BLOB), [pid(h) for h, _ in holders], manifest_hash=manifest)
    return data, [served(holder) for _, holder in holders]


def test_a_puller_takes_chunks_from_every_holder_at_once() -> None:
    data, uploads = run([TransferService] * 4, pull_from_every_holder)
    assert data == BLOB
    assert sum(1 for sent in uploads if sent > 0) >= 2, f"one holder served it all: {uploads}"
    assert sum(uploads) < 2 * len(BLOB), "chunks were asked twice only in the endgame"


def test_a_pull_asks_only_a_few_holders_at_once_and_always_the_first() -> None:
    data, uploads = run([TransferService] * (transfer.SWARM_PEERS + 3), pull_from_every_holder)
    assert data == BLOB and uploads[0] > 0, "the author is always asked"
    assert sum(1 for sent in uploads if sent > 0) <= transfer.SWARM_PEERS, uploads


def test_corrupted_chunks_are_dropped_and_the_blob_comes_from_the_others() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (bad_host, bad), (good_host, good), (_, puller) = services
        key = good.store.put(BLOB)
        bad.hold_corrupted(BLOB)
        manifest = good.manifest_hash(key)
        assert bad.manifest_hash(key) == manifest, "the liar offers the signed manifest"
        data = await puller.fetch(key, len(BLOB), [pid(bad_host), pid(good_host)], manifest_hash=manifest)
        return data, puller.store.get(key)

    data, stored = run([CorruptChunks, TransferService, TransferService], scenario)
    assert data == BLOB and stored == BLOB


def test_only_corrupted_chunks_on_offer_fail_the_pull() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (bad_host, bad), (_, puller) = services
        key = bad.hold_corrupted(BLOB)
        with pytest.raises(TransferError, match="does not match its manifest hash"):
            await puller.fetch(key, len(BLOB), [pid(bad_host)], manifest_hash=bad.manifest_hash(key))
        return key in puller.store

    assert run([CorruptChunks, TransferService], scenario) is False


def test_a_holder_dying_mid_transfer_leaves_its_chunks_to_the_others() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (dying_host, dying), (honest_host, honest), (_, puller) = services
        key = dying.store.put(BLOB)
        honest.store.put(BLOB)
        holders = [pid(dying_host), pid(honest_host)]
        data = await puller.fetch(key, len(BLOB), holders, manifest_hash=honest.manifest_hash(key))
        return data, served(dying)

    data, from_dying = run([DiesAfterTwoChunks, TransferService, TransferService], scenario)
    assert data == BLOB and 0 < from_dying < len(BLOB)


def test_a_manifest_that_does_not_match_the_signed_hash_is_refused() -> None:
    forged = os.urandom(len(BLOB))

    async def scenario(services):  # type: ignore[no-untyped-def]
        (liar_host, liar), (good_host, good), (_, puller) = services
        key = good.store.put(BLOB)
        liar.hold_forgery(key, forged)
        manifest = good.manifest_hash(key)
        return await puller.fetch(key, len(BLOB), [pid(liar_host), pid(good_host)], manifest_hash=manifest)

    assert run([LiesAboutTheManifest, TransferService, TransferService], scenario) == BLOB


def test_without_a_signed_manifest_a_lying_holder_costs_a_retry_not_the_blob() -> None:
    """A group model is named by its sha256 only: the first manifest is taken on trust, the whole-blob
    hash catches the lie, and the pull starts over without the liar."""
    forged = os.urandom(len(BLOB))

    async def scenario(services):  # type: ignore[no-untyped-def]
        (liar_host, liar), (good_host, good), (_, puller) = services
        key = good.store.put(BLOB)
        liar.hold_forgery(key, forged)
        return await puller.fetch(key, None, [pid(liar_host), pid(good_host)])

    for _ in range(3):  # which manifest comes first is a race: whichever it is, the blob is right
        assert run([LiesAboutTheManifest, TransferService, TransferService], scenario) == BLOB


def test_without_a_signed_manifest_a_forged_one_that_discredits_honest_holders_is_retried() -> None:
    """The forged manifest comes first, the honest holder's chunks fail against it; once the liar
    has stalled out, the pull starts over without the manifest's source."""

    async def scenario(services):  # type: ignore[no-untyped-def]
        (good_host, good), (liar_host, liar), (_, puller) = services
        key = good.store.put(BLOB)
        liar.hold_forged_partial(key, os.urandom(len(BLOB)))
        data = await puller.fetch(key, None, [pid(good_host), pid(liar_host)])
        return data, good.answered

    data, answers = run([SlowToAnswerFirst, OffersAForgedManifestOnly, TransferService], scenario)
    assert data == BLOB and answers >= 3, "asked again on the second pass"


def test_a_member_pulling_the_same_blob_serves_it_before_it_has_all_of_it() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (author_host, author), (relay_host, relay), (_, puller) = services
        key = author.store.put(BLOB)
        manifest = author.manifest_hash(key)
        await relay_host.connect(info_from_p2p_addr(author_host.get_addrs()[0]))
        results: dict[str, bytes] = {}

        async def pull(name: str, service: TransferService, holders) -> None:  # type: ignore[no-untyped-def]
            results[name] = await service.fetch(key, len(BLOB), holders, manifest_hash=manifest)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pull, "relay", relay, [pid(author_host)])
            nursery.start_soon(pull, "puller", puller, [pid(relay_host)])  # knows only the relay
        return results, served(relay)

    results, relayed = run([TransferService, TransferService, TransferService], scenario)
    assert results == {"relay": BLOB, "puller": BLOB} and relayed >= len(BLOB)


def test_a_node_of_the_previous_version_is_pulled_from_over_the_whole_pull() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (old_host, old), (_, puller) = services
        key = old.store.put(BLOB)
        return await puller.fetch(key, len(BLOB), [pid(old_host)], manifest_hash=old.manifest_hash(key))

    assert run([PreviousVersion, TransferService], scenario) == BLOB


def test_a_node_of_the_previous_version_can_still_pull_from_us() -> None:
    async def scenario(services):  # type: ignore[no-untyped-def]
        (new_host, new), (_, puller) = services
        key = new.store.put(BLOB)
        return await puller._fetch(key, len(BLOB), [pid(new_host)], [])  # noqa: SLF001 - the 1.0.0 pull

    assert run([TransferService, TransferService], scenario) == BLOB


def test_yamux_frames_fit_one_noise_message_once_a_host_is_built() -> None:
    from libp2p.crypto.ed25519 import create_new_key_pair

    from mycelium.net.host import build_host

    build_host(create_new_key_pair())
    assert yamux.MAX_MESSAGE_SIZE == MAX_PLAINTEXT_LENGTH == 65519
