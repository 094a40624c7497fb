"""The one place where messages are signed and verified.

Every signed message travels as an `Envelope`: schema version, kind, payload bytes, author peer id,
author public key and an Ed25519 (or other libp2p key) signature over
SIGNING_DOMAIN || kind || payload. `open_envelope` is the only way bytes from the network become a
`Signed` value: it checks size, decoding, schema version, kind, that the key belongs to the author
and the signature, and raises `InvalidMessage` naming the first check that failed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from google.protobuf.message import Message
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.peer.id import ID

from mycelium.errors import InvalidMessage
from mycelium.policy.peers import PeerId
from mycelium.proto import M, decode_exact
from mycelium.proto import mycelium_pb2 as pb

SCHEMA_VERSION = 2  # 2: group protocol v2 (record authority chain, sequence numbers, merge offers)
SIGNING_DOMAIN = b"mycelium/v1\x00"
Kind = pb.Envelope.Kind


@dataclass(frozen=True)
class Signed:
    """An envelope whose signature checked out."""

    kind: int
    author: PeerId
    payload: bytes
    raw: bytes

    def decode(self, message_type: type[M]) -> M:
        return decode_exact(message_type, self.payload)


def _signed_bytes(kind: int, payload: bytes) -> bytes:
    return SIGNING_DOMAIN + kind.to_bytes(4, "big") + payload


def peer_id_of(key_pair: KeyPair) -> PeerId:
    return PeerId(ID.from_pubkey(key_pair.public_key).to_bytes())


def seal(key_pair: KeyPair, kind: int, message: Message) -> bytes:
    """Serialize `message` and wrap it in an envelope signed with `key_pair`."""
    payload = message.SerializeToString(deterministic=True)
    envelope = pb.Envelope(
        schema_version=SCHEMA_VERSION,
        kind=kind,
        payload=payload,
        author=ID.from_pubkey(key_pair.public_key).to_bytes(),
        public_key=key_pair.public_key.serialize(),
        signature=key_pair.private_key.sign(_signed_bytes(kind, payload)),
    )
    return envelope.SerializeToString(deterministic=True)


def open_envelope(data: bytes, kind: int | Collection[int], max_bytes: int) -> Signed:
    """Verify an envelope of the expected `kind` (or one of several); raise InvalidMessage otherwise."""
    kinds = {kind} if isinstance(kind, int) else set(kind)
    if len(data) > max_bytes:
        raise InvalidMessage(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    envelope = decode_exact(pb.Envelope, data)
    if envelope.schema_version != SCHEMA_VERSION:
        raise InvalidMessage(f"unknown schema version {envelope.schema_version}")
    if envelope.kind not in kinds:
        expected = " or ".join(sorted(Kind.Name(k) for k in kinds))
        raise InvalidMessage(f"expected a {expected} message, got kind {envelope.kind}")
    try:
        public_key = deserialize_public_key(envelope.public_key)
        author = ID(envelope.author)
    except Exception:  # noqa: BLE001 - libp2p's key decoding raises several unrelated types
        raise InvalidMessage("undecodable author key") from None
    if ID.from_pubkey(public_key) != author:
        raise InvalidMessage("public key does not belong to the claimed author")
    try:
        valid = public_key.verify(_signed_bytes(envelope.kind, envelope.payload), envelope.signature)
    except Exception:  # noqa: BLE001 - a malformed signature is just a bad signature
        valid = False
    if not valid:
        raise InvalidMessage(f"bad signature from {author}")
    return Signed(kind=envelope.kind, author=PeerId(author.to_bytes()), payload=envelope.payload, raw=data)
