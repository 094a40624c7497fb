"""Registry latency: group record put/get over the DHT, side by side with hivemind's DHT.

    bash benchmarks/setup-hivemind.sh      # once: hivemind in its own venv
    python benchmarks/dht_latency.py --nodes 10 30 --records 40

For each network size N it starts N `mycelium node --group none` processes on loopback (each
bootstrapping from a random earlier one), lets their routing tables settle, then a writer peer puts
signed group records through `Registry` and a different reader peer gets each one back: a read
can only be answered by the network, so "missed" counts failed lookups. Then the same on N hivemind
DHT peers (hivemind_dht.py: writer `store`, a different reader `get(latest=True)`, values of our
records' size). Connect time is a fresh host dialling one node (TCP + Noise + Yamux); RSS is read
from /proc for every DHT-only node.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from nodes import NodeSet, percentile, rss_mib
from rich.console import Console
from rich.table import Table

from mycelium.net.host import NetConfig, build_host, open_stack
from mycelium.net.messages import seal_record
from mycelium.net.registry import Registry
from mycelium.net.signing import peer_id_of
from mycelium.policy.peers import PeerId
from mycelium.policy.records import GroupRecord, JoinPolicy, Member, Metrics, group_id_for

HERE = Path(__file__).resolve().parent
HIVEMIND_PYTHON = HERE / ".venv-hivemind" / "bin" / "python"
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
    """A writer peer puts `records` records, then a different reader peer gets each from the network."""
    writer_key, reader_key = create_new_key_pair(), create_new_key_pair()
    listen = (multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0"),)
    writer_config = NetConfig(listen=listen, bootstrap=tuple(multiaddr.Multiaddr(a) for a in addrs[-3:]))
    reader_config = NetConfig(listen=listen, bootstrap=tuple(multiaddr.Multiaddr(a) for a in addrs[:3]))
    puts: list[float] = []
    gets: list[float] = []
    misses = 0
    async with (
        open_stack(writer_key, writer_config) as writer,
        open_stack(reader_key, reader_config) as reader,
    ):
        await writer.bootstrap(lambda message: None)
        await reader.bootstrap(lambda message: None)
        writes = Registry(writer.dht, writer_key, nursery=writer.nursery)
        reads = Registry(reader.dht, reader_key, nursery=reader.nursery)
        written = [_record(writer_key, secrets.token_bytes(16)) for _ in range(records)]
        for record in written:
            start = time.perf_counter()
            await writes.put_group(record)
            puts.append(time.perf_counter() - start)
        for record in written:
            start = time.perf_counter()
            found = await reads.get_group(record.group_id)
            gets.append(time.perf_counter() - start)
            misses += found is None or found.version != record.version
        writer.nursery.cancel_scope.cancel()
        reader.nursery.cancel_scope.cancel()
    size = float(len(written[0].signed))
    return {"put": puts, "get": gets, "misses": [float(misses)], "value_bytes": [size]}


def _hivemind_latency(count: int, records: int, value_bytes: int) -> dict[str, list[float]] | None:
    """The same measurement on hivemind's DHT (hivemind_dht.py in its own venv), or None without it."""
    if not HIVEMIND_PYTHON.exists():
        return None
    command = [str(HIVEMIND_PYTHON), str(HERE / "hivemind_dht.py"), "--nodes", str(count)]
    command += ["--records", str(records), "--value-bytes", str(value_bytes)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"put": result["put"], "get": result["get"], "misses": [float(result["misses"])]}


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
    return f"{1000 * percentile(values, q):.1f}"


def _ratio(ours: list[float], anchor: dict[str, list[float]] | None, what: str) -> str:
    if anchor is None:
        return "-"
    return f"{percentile(ours, 50) / percentile(anchor[what], 50):.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--records", type=int, default=40, help="records put then read per size")
    args = parser.parse_args()
    console = Console(width=200)
    table = Table(title=f"Group-record registry on loopback, Mycelium vs hivemind ({os.cpu_count()} cores)")
    columns = ["nodes", "system", "put p50 ms", "put p95 ms", "get p50 ms", "get p95 ms", "missed"]
    columns += ["put p50 vs hivemind", "get p50 vs hivemind", "connect p50 ms", "idle RSS MiB (median)"]
    for column in columns:
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="mycelium-bench-") as tmp:
        for count in args.nodes:
            console.print(f"starting {count} DHT-only Mycelium nodes ...")
            started = time.monotonic()
            mesh = NodeSet(Path(tmp) / f"n{count}", count, ["--group", "none"])
            try:
                console.print(f"  listening after {time.monotonic() - started:.1f} s; settling")
                time.sleep(SETTLE_SECONDS)
                ours = trio.run(_registry_latency, mesh.addrs, args.records)
                connects = trio.run(_connect_times, mesh.addrs[0], CONNECT_SAMPLES)
                rss = [rss_mib(node.process.pid) for node in mesh.nodes]
            finally:
                mesh.close()
            console.print(f"starting {count} hivemind DHT peers ...")
            anchor = _hivemind_latency(count, args.records, int(ours["value_bytes"][0]))
            table.add_row(
                str(count),
                "Mycelium",
                _ms(ours["put"], 50),
                _ms(ours["put"], 95),
                _ms(ours["get"], 50),
                _ms(ours["get"], 95),
                f"{int(ours['misses'][0])}/{args.records}",
                _ratio(ours["put"], anchor, "put"),
                _ratio(ours["get"], anchor, "get"),
                _ms(connects, 50),
                f"{percentile(rss, 50):.0f}",
            )
            if anchor is None:
                table.add_row(str(count), "hivemind", "not installed: bash benchmarks/setup-hivemind.sh")
                continue
            table.add_row(
                str(count),
                "hivemind",
                _ms(anchor["put"], 50),
                _ms(anchor["put"], 95),
                _ms(anchor["get"], 50),
                _ms(anchor["get"], 95),
                f"{int(anchor['misses'][0])}/{2 * args.records} (puts and gets)",
                "",
                "",
                "",
                "",
            )
    console.print(table)


if __name__ == "__main__":
    main()
