"""Invites to invite-only groups: a signed token naming the group, optionally the invitee, and an expiry."""

from __future__ import annotations

from libp2p.crypto.keys import KeyPair

from mycelium.errors import InvalidMessage
from mycelium.net.signing import Kind, open_envelope, seal
from mycelium.policy.peers import PeerId
from mycelium.proto import mycelium_pb2 as pb

MAX_INVITE_BYTES = 1024


def make_invite(
    key_pair: KeyPair, group_id: str, invitee: PeerId | None, expires_at: float, nonce: bytes
) -> bytes:
    invite = pb.Invite(
        group_id=group_id,
        invitee=invitee.raw if invitee else b"",
        expires_at=expires_at,
        nonce=nonce,
    )
    return seal(key_pair, Kind.INVITE, invite)


def invite_problem(
    data: bytes, group_id: str, requester: PeerId, issuers: frozenset[PeerId], now: float
) -> str | None:
    """Why this invite does not admit `requester` to `group_id`, or None when it does.

    `issuers` are the peers allowed to sign invites: the group's current members.
    """
    try:
        signed = open_envelope(data, Kind.INVITE, MAX_INVITE_BYTES)
        invite = signed.decode(pb.Invite)
    except InvalidMessage as error:
        return str(error)
    if invite.group_id != group_id:
        return "invite is for another group"
    if invite.expires_at <= now:
        return "invite expired"
    if invite.invitee and invite.invitee != requester.raw:
        return "invite is for another peer"
    if signed.author not in issuers:
        return "invite not signed by a current member"
    return None
