"""Registry baseline: group record put/get latency over the DHT, connect time, idle RSS.

    python benchmarks/dht_latency.py --nodes 10 30 --records 40

For each network size N it starts N `mycelium node --group none` processes on loopback (each
bootstrapping from a random earlier one), lets their routing tables settle, then joins them with an
in-process peer that puts and gets signed group records through `Registry` (network-first reads:
the local copy never answers). Connect time is a fresh host dialling one node (TCP + Noise + Yamux).
RSS is read from /proc for every DHT-only node and for one learning node waiting at --hold.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from nodes import Node, NodeSet, percentile, rss_mib
from rich.console import Console
from rich.table import Table

from mycelium.net.host import NetConfig, build_host, open_stack
from mycelium.net.messages import seal_record
from mycelium.net.registry import Registry
from mycelium.net.signing import peer_id_of
from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord, JoinPolicy, Member, Metrics, group_id_for

SETTLE_SECONDS = 35.0  # nodes refill their routing tables 10 s and 30 s after start
CONNECT_SAMPLES = 20


def _record(key_pair, nonce: bytes) -> GroupRecord:  # type: ignore[no-untyped-def]
    now = time.time()
    peer: PeerId = peer_id_of(key_pair)
    return seal_record(
        key_pair,
        GroupRecord(
            group_id=group_id_for(peer, nonce),
            task="bench-mlp",
            name="bench",
            model_fingerprint="mlp:bench",
            policy=JoinPolicy.OPEN,
            capacity=10,
            round=0,
            members=(Member(peer, now, now),),
            metrics=Metrics(accuracy=0.5),
            version=1,
            updated_at=now,
            expires_at=now + 600,
            creator=peer,
            nonce=nonce,
            leader=peer,
        ),
    )


async def _registry_latency(addrs: list[str], records: int) -> dict[str, list[float]]:
    key_pair = create_new_key_pair()
    config = NetConfig(
        listen=(multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0"),),
        bootstrap=tuple(multiaddr.Multiaddr(a) for a in addrs[-3:]),
    )
    puts: list[float] = []
    gets: list[float] = []
    misses = 0
    async with open_stack(key_pair, config) as stack:
        await stack.bootstrap(lambda message: None)
        registry = Registry(stack.dht, key_pair)
        written = [_record(key_pair, secrets.token_bytes(16)) for _ in range(records)]
        for record in written:
            start = time.perf_counter()
            await registry.put_group(record)
            puts.append(time.perf_counter() - start)
        for record in written:
            start = time.perf_counter()
            found = await registry.get_group(record.group_id)
            gets.append(time.perf_counter() - start)
            misses += found is None or found.version != record.version
        stack.nursery.cancel_scope.cancel()
    return {"put": puts, "get": gets, "misses": [float(misses)]}


async def _connect_times(addr: str, samples: int) -> list[float]:
    info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
    times: list[float] = []
    for _ in range(samples):
        host = build_host(create_new_key_pair())
        async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            start = time.perf_counter()
            with trio.fail_after(10):
                await host.connect(info)
            times.append(time.perf_counter() - start)
            await host.disconnect(info.peer_id)
    return times


def _ms(values: list[float], q: float) -> str:
    return f"{1000 * percentile(values, q):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--records", type=int, default=40, help="records put then read per size")
    args = parser.parse_args()
    console = Console(width=160)
    table = Table(title=f"DHT registry on loopback ({os.cpu_count()} cores)")
    for column in (
        "nodes",
        "put p50 ms",
        "put p95 ms",
        "get p50 ms",
        "get p95 ms",
        "missed gets",
        "connect p50 ms",
        "connect p95 ms",
        "idle RSS MiB (DHT-only, median)",
    ):
        table.add_column(column, justify="right")
    learner_rss = 0.0
    with tempfile.TemporaryDirectory(prefix="mycelium-bench-") as tmp:
        for count in args.nodes:
            root = Path(tmp) / f"n{count}"
            console.print(f"starting {count} DHT-only nodes ...")
            started = time.monotonic()
            mesh = NodeSet(root, count, ["--group", "none"])
            try:
                console.print(f"  listening after {time.monotonic() - started:.1f} s; settling")
                time.sleep(SETTLE_SECONDS)
                latency = trio.run(_registry_latency, mesh.addrs, args.records)
                connects = trio.run(_connect_times, mesh.addrs[0], CONNECT_SAMPLES)
                rss = [rss_mib(node.process.pid) for node in mesh.nodes]
                if not learner_rss:
                    learner = Node(
                        root, "learner", ["--group", "new", "--hold", "--bootstrap", mesh.addrs[0]]
                    )
                    learner.wait_for("holding", timeout=120)
                    time.sleep(5)
                    learner_rss = rss_mib(learner.process.pid)
                    learner.process.terminate()
                    learner.process.wait(timeout=10)
            finally:
                mesh.close()
            table.add_row(
                str(count),
                _ms(latency["put"], 50),
                _ms(latency["put"], 95),
                _ms(latency["get"], 50),
                _ms(latency["get"], 95),
                f"{int(latency['misses'][0])}/{args.records}",
                _ms(connects, 50),
                _ms(connects, 95),
                f"{percentile(rss, 50):.0f}",
            )
    console.print(table)
    console.print(f"idle learning node (digits MLP loaded, waiting at --hold): RSS {learner_rss:.0f} MiB")


if __name__ == "__main__":
    main()
