"""/mycelium/groups/1.0.0: peers share the group records they hold, and askers check every one."""

from __future__ import annotations

import time

import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from records import group_record

from mycelium.errors import InvalidMessage
from mycelium.net.exchange import ASK_TIMEOUT, MAX_SHARED_RECORDS, ask_groups, serve_groups
from mycelium.net.host import NetConfig, open_stack, parse_multiaddr
from mycelium.net.messages import decode_group_record, seal_record

LOOPBACK = (multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0"),)


async def _ask_a_peer(serve: bool, records: list[bytes]) -> tuple[list[bytes], list[str], float]:
    asked: list[str] = []

    def records_for(task: str) -> list[bytes]:
        asked.append(task)
        return records

    async with open_stack(create_new_key_pair(), NetConfig(listen=LOOPBACK)) as server:
        if serve:
            serve_groups(server.host, records_for)
        bootstrap = (parse_multiaddr(server.listen_addrs()[0], what="bootstrap"),)
        config = NetConfig(listen=LOOPBACK, bootstrap=bootstrap)
        async with open_stack(create_new_key_pair(), config) as client:
            await client.bootstrap(lambda message: None)
            began = time.monotonic()
            answer = await ask_groups(client.opener, server.peer_id, "digits-mlp")
            return answer, asked, time.monotonic() - began


def test_a_peer_shares_at_most_32_records_and_the_asker_checks_each_one() -> None:
    leader = create_new_key_pair()
    good = seal_record(leader, group_record(leader))
    forged = bytearray(good.signed)
    forged[-1] ^= 1  # the signature no longer matches
    answer, asked, _ = trio.run(_ask_a_peer, True, [good.signed, bytes(forged), b"junk", *[good.signed] * 40])
    assert asked == ["digits-mlp"]
    assert len(answer) == MAX_SHARED_RECORDS
    assert decode_group_record(answer[0], time.time()).digest == good.digest
    for bad in answer[1:3]:
        with pytest.raises(InvalidMessage):
            decode_group_record(bad, time.time())


def test_a_peer_that_does_not_speak_the_protocol_costs_one_bounded_wait_and_yields_nothing() -> None:
    answer, asked, seconds = trio.run(_ask_a_peer, False, [])
    assert answer == [] and asked == []
    assert seconds < ASK_TIMEOUT + 1


def test_a_newcomer_learns_its_group_from_the_peer_it_bootstraps_from_without_reading_the_dht(spawn) -> None:
    leader = spawn("leader", "--group", "new")
    group = leader.wait_for("joined")["group"]
    newcomer = spawn("newcomer", "--bootstrap", leader.addr)
    joined = newcomer.wait_for("joined")
    first_look = newcomer.wait_for("evaluated")
    assert joined["group"] == group and not joined["created"]
    assert [c["group"] for c in first_look["candidates"]] == [group]
    assert first_look["listing_seconds"] == 0.0, "the newcomer had to list the DHT: its peer shared nothing"
