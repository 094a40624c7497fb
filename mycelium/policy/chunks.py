"""Swarming a blob: manifests, bitfields and which chunk to ask whom for. Pure: no I/O, no clock.

Theory of operation. A blob is cut into chunks of `chunk_size` bytes (the last one shorter). Its
`Manifest` lists the sha256 of every chunk; the manifest's own hash (`manifest_hash`, over the chunk
size, the total size and the chunk hashes) is what the author signs in its UpdateAnnounce. A puller
gets the manifest from any holder, checks it against that signed hash, and from then on checks every
chunk on arrival, so a chunk from any peer can be used the moment it verifies and served on at once.
(Without a signed hash, e.g. a group model named only by its sha256, the first manifest is taken on
trust and the whole-blob sha256, always checked at the end, decides; a lying source is then
excluded and the pull starts over.)

`ChunkBook` is the puller's state: which chunks it has, which are being fetched from whom, what each
holder says it has, and which holders served a bad chunk. Callers feed it events (`have`,
`received`, `released`, `corrupt`) and ask it `pick(holder)`: the chunks to request from that holder
next, rarest first among the holders that are not marked bad, random among equally rare ones, never
a chunk already in flight, except in the endgame (nothing else left to ask for), where a chunk in
flight elsewhere may be asked of one more holder (one chunk a request, at most ENDGAME_COPIES holders
a chunk) so that one slow or dead holder cannot hold up the end.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

MANIFEST_DOMAIN = b"mycelium/manifest/v1\0"
HASH_BYTES = 32
ENDGAME_COPIES = 2  # in the endgame a chunk is asked of at most this many holders at once


class ManifestError(ValueError):
    """A manifest that does not fit its blob or its signed hash."""


def chunk_count(total_size: int, chunk_size: int) -> int:
    return max(1, -(-total_size // chunk_size))


def chunk_span(index: int, total_size: int, chunk_size: int) -> tuple[int, int]:
    """(offset, length) of chunk `index`."""
    offset = index * chunk_size
    return offset, min(chunk_size, total_size - offset)


@dataclass(frozen=True)
class Manifest:
    chunk_size: int
    total_size: int
    chunk_hashes: tuple[bytes, ...]

    @classmethod
    def of(cls, blob: bytes, chunk_size: int) -> Manifest:
        view = memoryview(blob)
        hashes = tuple(
            hashlib.sha256(view[offset : offset + chunk_size]).digest()
            for offset in range(0, max(len(blob), 1), chunk_size)
        )
        return cls(chunk_size, len(blob), hashes)

    @property
    def count(self) -> int:
        return len(self.chunk_hashes)

    def digest(self) -> bytes:
        return manifest_hash(self.chunk_size, self.total_size, self.chunk_hashes)

    def span(self, index: int) -> tuple[int, int]:
        return chunk_span(index, self.total_size, self.chunk_size)

    def verifies(self, index: int, data: bytes) -> bool:
        """Is `data` chunk `index` of the blob?"""
        return (
            0 <= index < self.count
            and len(data) == self.span(index)[1]
            and hashlib.sha256(data).digest() == self.chunk_hashes[index]
        )


def manifest_hash(chunk_size: int, total_size: int, chunk_hashes: Sequence[bytes]) -> bytes:
    sizes = chunk_size.to_bytes(8, "big") + total_size.to_bytes(8, "big")
    return hashlib.sha256(MANIFEST_DOMAIN + sizes + b"".join(chunk_hashes)).digest()


def checked_manifest(
    chunk_size: int,
    total_size: int,
    chunk_hashes: Sequence[bytes],
    *,
    expected_hash: bytes | None,
    expected_size: int | None,
    max_size: int,
    allowed_chunk_sizes: Iterable[int],
) -> Manifest:
    """A manifest as a holder sent it, checked for shape (and against `expected_hash` when signed)."""
    if chunk_size not in set(allowed_chunk_sizes):
        raise ManifestError(f"chunk size {chunk_size} is not one we accept")
    if total_size > max_size or (expected_size is not None and total_size != expected_size):
        raise ManifestError(f"holder offers {total_size} bytes, expected {expected_size}")
    if len(chunk_hashes) != chunk_count(total_size, chunk_size):
        raise ManifestError(f"manifest lists {len(chunk_hashes)} chunks for {total_size} bytes")
    if any(len(h) != HASH_BYTES for h in chunk_hashes):
        raise ManifestError("manifest holds a hash that is not 32 bytes")
    if expected_hash is not None and manifest_hash(chunk_size, total_size, chunk_hashes) != expected_hash:
        raise ManifestError("manifest does not match the hash its author signed")
    return Manifest(chunk_size, total_size, tuple(chunk_hashes))


def encode_bitfield(held: Iterable[int], count: int) -> bytes:
    """Bit i (byte i // 8, most significant bit first, as BitTorrent's) set when chunk i is held."""
    out = bytearray(-(-count // 8))
    for index in held:
        out[index // 8] |= 0x80 >> (index % 8)
    return bytes(out)


def decode_bitfield(bits: bytes, count: int) -> frozenset[int]:
    """The chunks a bitfield marks; ManifestError if it is not exactly as long as `count` needs."""
    if len(bits) != -(-count // 8):
        raise ManifestError(f"bitfield of {len(bits)} bytes for {count} chunks")
    held = frozenset(i for i in range(len(bits) * 8) if bits[i // 8] & (0x80 >> (i % 8)))
    if any(i >= count for i in held):
        raise ManifestError("bitfield marks chunks past the end")
    return held


@dataclass
class ChunkBook:
    """What a puller has, is fetching, and knows of its holders' chunks; see the module docstring."""

    count: int
    rng: random.Random = field(default_factory=random.Random)
    done: set[int] = field(default_factory=set)
    in_flight: dict[int, set[Hashable]] = field(default_factory=dict)
    holders: dict[Hashable, frozenset[int]] = field(default_factory=dict)
    bad: set[Hashable] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return len(self.done) == self.count

    def have(self, holder: Hashable, chunks: frozenset[int]) -> None:
        if holder not in self.bad:
            self.holders[holder] = chunks

    def pick(self, holder: Hashable, limit: int) -> list[int]:
        """Up to `limit` chunks to ask `holder` for now (rarest first); empty if nothing it has helps."""
        if holder in self.bad or limit <= 0:
            return []
        offered = self.holders.get(holder, frozenset()) - self.done
        fresh = [i for i in offered if i not in self.in_flight]
        if not fresh and len(self.done) + len(self.in_flight) == self.count:
            # endgame: everything missing is asked for; ask one more holder for one chunk at a time
            fresh = [i for i in offered if len(self.in_flight.get(i, ())) < ENDGAME_COPIES]
            fresh = [i for i in fresh if holder not in self.in_flight.get(i, ())]
            limit = 1
        rarity = self._rarity()
        self.rng.shuffle(fresh)
        fresh.sort(key=lambda i: (rarity.get(i, 0), len(self.in_flight.get(i, ()))))
        chosen = fresh[:limit]
        for index in chosen:
            self.in_flight.setdefault(index, set()).add(holder)
        return chosen

    def _rarity(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for holder, chunks in self.holders.items():
            if holder not in self.bad:
                for index in chunks:
                    counts[index] = counts.get(index, 0) + 1
        return counts

    def received(self, holder: Hashable, index: int) -> bool:
        """A verified chunk arrived; True when it is new to us (False: a duplicate of the endgame)."""
        self._drop_flight(holder, index)
        if index in self.done:
            return False
        self.done.add(index)
        return True

    def released(self, holder: Hashable, chunks: Iterable[int]) -> None:
        """`holder` will not deliver these (it failed, went away or did not have them)."""
        for index in chunks:
            self._drop_flight(holder, index)

    def corrupt(self, holder: Hashable) -> None:
        """`holder` served a chunk that does not verify: never ask it again, forget what it claims."""
        self.bad.add(holder)
        self.holders.pop(holder, None)
        for index in list(self.in_flight):
            self._drop_flight(holder, index)

    def _drop_flight(self, holder: Hashable, index: int) -> None:
        owners = self.in_flight.get(index)
        if owners is not None:
            owners.discard(holder)
            if not owners:
                del self.in_flight[index]
