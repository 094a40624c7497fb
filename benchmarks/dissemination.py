"""Model dissemination: one member's model reaching all the others, next to plain TCP.

    python benchmarks/dissemination.py --members 10 --sizes-mib 1 10 --repeats 5

Starts `--members` peer processes on loopback (this file with --peer). The author puts a random blob
in its store and publishes a signed UpdateAnnounce on a gossipsub topic, as a group member does
after training; every other member pulls the blob over /mycelium/model/1.0.0 (chunked, hash
checked) and answers with a signed heartbeat naming the blob's hash. The time is from the announce
to the last answer. The limit next to it: one sender writing the same bytes over plain loopback TCP
sockets to the same number of receiving processes at once, no encryption, no framing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from statistics import median

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from rich.console import Console
from rich.table import Table

from mycelium.mesh.launcher import die_with_parent
from mycelium.net.gossip import Topic, run_topic
from mycelium.net.host import NetConfig, open_stack
from mycelium.net.signing import Kind, Signed
from mycelium.net.transfer import BlobStore, Traffic, TransferService, content_hash
from mycelium.proto import mycelium_pb2 as pb

TOPIC = "mycelium/bench/dissemination"
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
ANSWER_TIMEOUT = 120.0


async def _peer(index: int, bootstrap: str | None, members: int, sizes: list[int], repeats: int) -> None:
    key_pair = create_new_key_pair()
    config = NetConfig(
        listen=(multiaddr.Multiaddr(LOOPBACK),),
        bootstrap=(multiaddr.Multiaddr(bootstrap),) if bootstrap else (),
    )
    async with open_stack(key_pair, config) as stack:
        if bootstrap:
            await stack.bootstrap(lambda message: None)
        traffic = Traffic()
        service = TransferService(
            stack.host, stack.opener, BlobStore(max_blobs=4, max_bytes=64 << 20), traffic
        )
        topic = Topic(
            TOPIC, stack.pubsub, key_pair, traffic, frozenset({Kind.UPDATE_ANNOUNCE, Kind.MEMBER_HEARTBEAT})
        )
        inbox_send, inbox = trio.open_memory_channel[Signed](64)
        ready = trio.Event()
        stack.nursery.start_soon(run_topic, topic, inbox_send.send_nowait, ready, stack.peer_id)
        await ready.wait()
        print(json.dumps({"listening": stack.listen_addrs()[0]}), flush=True)
        if index == 0:
            await _author(stack, service, topic, inbox, members, sizes, repeats)
        else:
            await _receiver(service, topic, inbox)
        stack.nursery.cancel_scope.cancel()


async def _author(stack, service, topic, inbox, members, sizes, repeats) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(60):
        while len(stack.pubsub.peer_topics.get(TOPIC, ())) < members - 1:
            await trio.sleep(0.1)
    await trio.sleep(3)  # let the gossipsub mesh form (a heartbeat or two)
    for size in sizes:
        for _ in range(repeats):
            blob = os.urandom(size)
            key = service.store.put(blob)
            started = time.perf_counter()
            await topic.publish(Kind.UPDATE_ANNOUNCE, pb.UpdateAnnounce(content_hash=key, size=size))
            answered: set[bytes] = set()
            with trio.fail_after(ANSWER_TIMEOUT):
                while len(answered) < members - 1:
                    signed = await inbox.receive()
                    heartbeat = signed.decode(pb.MemberHeartbeat)
                    if heartbeat.model_hash == key:
                        answered.add(signed.author.to_bytes())
            print(json.dumps({"size": size, "seconds": time.perf_counter() - started}), flush=True)
            await trio.sleep(0.5)
    print(json.dumps({"done": True}), flush=True)


async def _receiver(service, topic, inbox) -> None:  # type: ignore[no-untyped-def]
    async for signed in inbox:
        if signed.kind != Kind.UPDATE_ANNOUNCE:
            continue
        announce = signed.decode(pb.UpdateAnnounce)
        blob = await service.fetch(announce.content_hash, announce.size, [signed.author])
        await topic.publish(Kind.MEMBER_HEARTBEAT, pb.MemberHeartbeat(model_hash=content_hash(blob)))


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only libc prctl, before exec
    )


def _libp2p_times(members: int, sizes: list[int], repeats: int) -> dict[int, list[float]]:
    common = ["--members", str(members), "--repeats", str(repeats), "--sizes", *map(str, sizes)]
    author = _spawn("--peer", "0", *common)
    processes = [author]
    try:
        bootstrap = json.loads(author.stdout.readline())["listening"]  # type: ignore[union-attr]
        for index in range(1, members):
            processes.append(_spawn("--peer", str(index), "--bootstrap", bootstrap, *common))
        times: dict[int, list[float]] = {size: [] for size in sizes}
        for line in author.stdout:  # type: ignore[union-attr]
            result = json.loads(line)
            if "done" in result:
                break
            times[result["size"]].append(result["seconds"])
        return times
    finally:
        for process in processes:
            process.kill()
            process.wait()


TCP_RECEIVER = """
import socket, sys
size = int(sys.argv[2]); sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buffer = bytearray(1 << 20); view = memoryview(buffer); got = 0
while got < size:
    n = sock.recv_into(view)
    if n == 0: raise SystemExit("short read")
    got += n
sock.sendall(b"k")
"""


def _tcp_time(receivers: int, size: int) -> float:
    """One sender, `receivers` receiving processes, the same bytes to each at once."""
    blob = os.urandom(size)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        clients = [
            subprocess.Popen([sys.executable, "-c", TCP_RECEIVER, str(port), str(size)])
            for _ in range(receivers)
        ]
        connections = [server.accept()[0] for _ in range(receivers)]
        started = time.perf_counter()

        async def send_all() -> None:
            async with trio.open_nursery() as nursery:
                for connection in connections:
                    nursery.start_soon(_send_and_wait, connection, blob)

        trio.run(send_all)
        elapsed = time.perf_counter() - started
        for connection in connections:
            connection.close()
        for client in clients:
            client.wait(timeout=30)
    return elapsed


async def _send_and_wait(connection: socket.socket, blob: bytes) -> None:
    wrapped = trio.socket.from_stdlib_socket(connection)
    view = memoryview(blob)
    while view:
        sent = await wrapped.send(view[: 1 << 20])
        view = view[sent:]
    await wrapped.recv(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--sizes-mib", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer is not None:
        trio.run(_peer, args.peer, args.bootstrap, args.members, args.sizes, args.repeats)
        return
    sizes = [int(mib * (1 << 20)) for mib in args.sizes_mib]
    libp2p = _libp2p_times(args.members, sizes, args.repeats)
    table = Table(title=f"One model to {args.members - 1} members on loopback (median of {args.repeats})")
    for column in ("size", "mycelium s", "plain TCP s", "ratio", "mycelium MiB/s per member"):
        table.add_column(column, justify="right")
    for size in sizes:
        tcp = median(_tcp_time(args.members - 1, size) for _ in range(args.repeats))
        ours = median(libp2p[size])
        table.add_row(
            f"{size / (1 << 20):g} MiB",
            f"{ours:.3f}",
            f"{tcp:.3f}",
            f"{ours / tcp:.0f}x",
            f"{size / (1 << 20) / ours:.1f}",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
