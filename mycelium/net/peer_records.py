"""py-libp2p 0.8.1's pubsub, made to check a sender's signed peer record once, not in every RPC,
and to build our own record once, not for every RPC.

Every pubsub RPC py-libp2p sends carries the sender's signed peer record (its addresses, signed
with its peer key), and the receiver verifies and stores it on every RPC: twice for RPCs with
control messages (pubsub.py and gossipsub.py each call `maybe_consume_signed_record`). The record
changes only when the sender's addresses do, so almost all of these are the same bytes, checked
again. In a 30-peer mesh at rest, Ed25519 verification of those records was 5-6 % of a process's
CPU (py-spy, benchmarks/RESULTS.md "Third pass").

`apply` wraps that function: a record already verified and stored for that same sender, byte for
byte, within `RECHECK_SECONDS`, is accepted without verifying it again. Anything else (a new
record, another sender, a failed check) goes through py-libp2p's function unchanged, so nothing
unverified is ever accepted, and the peerstore's address TTL is still refreshed once a minute.

The sending side has the same waste: for every RPC, py-libp2p's `env_to_send_in_RPC` lists the
host's addresses again (multiaddrs rebuilt from the listening sockets and parsed) to see whether
its cached record still matches, then serialises the record again. That was about a fifth of the
CPU of a published message between two peers (cProfile, benchmarks/RESULTS.md "Sixth pass").
`SentRecords` keeps each host's answer for `RESEND_SECONDS`: a host whose addresses change sends
its older record, still validly signed, for at most that long.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Callable

from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub import gossipsub, pubsub
from libp2p.pubsub.pb.rpc_pb2 import RPC

RECHECK_SECONDS = 60.0
MAX_REMEMBERED = 1024  # senders
RESEND_SECONDS = 10.0

Consume = Callable[[RPC, IHost, ID], bool]
Issue = Callable[[IHost], tuple[bytes, bool]]


class VerifiedRecords:
    """Which sender sent which record bytes that verified, and when; bounded, oldest out first."""

    def __init__(self, consume: Consume, clock: Callable[[], float] = time.monotonic) -> None:
        self._consume = consume
        self._clock = clock
        self._verified: OrderedDict[tuple[IHost, ID], tuple[bytes, float]] = OrderedDict()

    def __call__(self, rpc: RPC, host: IHost, peer_id: ID) -> bool:
        if not rpc.HasField("senderRecord"):
            return True
        key, record, now = (host, peer_id), rpc.senderRecord, self._clock()
        known = self._verified.get(key)
        if known is not None and known[0] == record and now - known[1] < RECHECK_SECONDS:
            return True
        if not self._consume(rpc, host, peer_id):
            return False
        self._verified[key] = (record, now)
        self._verified.move_to_end(key)
        while len(self._verified) > MAX_REMEMBERED:
            self._verified.popitem(last=False)
        return True


class SentRecords:
    """Our own signed record as py-libp2p would put it in an RPC, built at most every
    `RESEND_SECONDS` per host (hosts are held weakly: a closed host leaves no entry behind)."""

    def __init__(self, issue: Issue, clock: Callable[[], float] = time.monotonic) -> None:
        self._issue = issue
        self._clock = clock
        self._built: weakref.WeakKeyDictionary[IHost, tuple[bytes, float]] = weakref.WeakKeyDictionary()

    def __call__(self, host: IHost) -> tuple[bytes, bool]:
        now = self._clock()
        built = self._built.get(host)
        if built is not None and now - built[1] < RESEND_SECONDS:
            return built[0], False
        envelope, fresh = self._issue(host)
        self._built[host] = (envelope, now)
        return envelope, fresh


def apply() -> None:
    """Idempotent; affects every pubsub of this process."""
    if isinstance(pubsub.maybe_consume_signed_record, VerifiedRecords):
        return
    checked_once = VerifiedRecords(pubsub.maybe_consume_signed_record)
    pubsub.maybe_consume_signed_record = checked_once  # type: ignore[assignment]
    gossipsub.maybe_consume_signed_record = checked_once  # type: ignore[assignment]
    built_once = SentRecords(pubsub.env_to_send_in_RPC)
    pubsub.env_to_send_in_RPC = built_once  # type: ignore[assignment]
    gossipsub.env_to_send_in_RPC = built_once  # type: ignore[assignment]
