"""Model dissemination: one member's model reaching all the others, next to plain TCP.

    python benchmarks/dissemination.py --members 10 --sizes-mib 1 10 --repeats 5

Starts `--members` peer processes on loopback (this file with --peer). The author puts a random blob
in its store and publishes a signed UpdateAnnounce on a gossipsub topic, as a group member does
after training; every other member pulls the blob (chunked, hash checked; the other members are
its candidate holders, as in a round) and answers with a signed heartbeat naming the blob's hash.
The time is from the announce to the last answer. The same again with a single member (author and
one puller), so the ratio says what the other eight cost. The limit next to it: one sender writing
the same bytes over plain loopback TCP sockets to the same number of receiving processes at once, no
encryption, no framing.

Each process notes its CPU time at every announce, so the table also gives the CPU seconds all the
processes spent per delivery (the 0.5 s pause between repeats included): on a machine with fewer
cores than processes, that, not the network, bounds the time to reach every member.

Last, one stream's throughput: a second process (--stream-peer) writes `--stream-mib` MiB on one
libp2p stream (Noise + Yamux, our host's configuration) and this process reads it, next to the same
bytes over one plain loopback socket between the same two processes (trio on both ends).
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
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from rich.console import Console
from rich.table import Table

from mycelium.mesh.launcher import die_with_parent
from mycelium.net.gossip import Topic, run_topic
from mycelium.net.host import NetConfig, build_host, open_stack
from mycelium.net.signing import Kind, Signed, seal
from mycelium.net.transfer import BlobStore, Traffic, TransferService, content_hash
from mycelium.policy.peers import PeerId
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
            await _receiver(stack, service, topic, inbox)
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
            print(json.dumps({"cpu": time.process_time()}), flush=True)
            announce = pb.UpdateAnnounce(content_hash=key, size=size)
            if hasattr(service, "manifest_hash"):  # (so that the same file measures the code before it)
                announce.manifest_hash = service.manifest_hash(key)
            await topic.publish(seal(topic.key_pair, Kind.UPDATE_ANNOUNCE, announce))
            answered: set[bytes] = set()
            with trio.fail_after(ANSWER_TIMEOUT):
                while len(answered) < members - 1:
                    signed = await inbox.receive()
                    heartbeat = signed.decode(pb.MemberHeartbeat)
                    if heartbeat.model_hash == key:
                        answered.add(signed.author.raw)
            print(json.dumps({"size": size, "seconds": time.perf_counter() - started}), flush=True)
            await trio.sleep(0.5)
    # closes the last repeat's CPU count: every process notes its CPU time at each announce
    print(json.dumps({"cpu": time.process_time()}), flush=True)
    await topic.publish(seal(topic.key_pair, Kind.UPDATE_ANNOUNCE, pb.UpdateAnnounce()))
    await trio.sleep(1)
    print(json.dumps({"done": True}), flush=True)


async def _receiver(stack, service, topic, inbox) -> None:  # type: ignore[no-untyped-def]
    async for signed in inbox:
        if signed.kind != Kind.UPDATE_ANNOUNCE:
            continue
        announce = signed.decode(pb.UpdateAnnounce)
        print(json.dumps({"cpu": time.process_time()}), flush=True)
        if not announce.content_hash:  # the end of the run
            continue
        # as a round does: the author first, then the group's other members (here: the topic's peers)
        members = sorted(PeerId(peer.to_bytes()) for peer in stack.pubsub.peer_topics.get(TOPIC, ()))
        holders = [signed.author, *(member for member in members if member != signed.author)]
        manifest = getattr(announce, "manifest_hash", b"")
        signed_manifest = {"manifest_hash": manifest} if manifest else {}
        blob = await service.fetch(announce.content_hash, announce.size, holders, **signed_manifest)
        heartbeat = pb.MemberHeartbeat(model_hash=content_hash(blob))
        await topic.publish(seal(topic.key_pair, Kind.MEMBER_HEARTBEAT, heartbeat))


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only libc prctl, before exec
    )


def _libp2p_times(
    members: int, sizes: list[int], repeats: int
) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    """Seconds from announce to the last answer, and CPU seconds all processes spent, per repeat."""
    common = ["--members", str(members), "--repeats", str(repeats), "--sizes", *map(str, sizes)]
    author = _spawn("--peer", "0", *common)
    processes = [author]
    try:
        bootstrap = json.loads(author.stdout.readline())["listening"]  # type: ignore[union-attr]
        for index in range(1, members):
            processes.append(_spawn("--peer", str(index), "--bootstrap", bootstrap, *common))
        times: dict[int, list[float]] = {size: [] for size in sizes}
        marks: list[list[float]] = [[]]
        for line in author.stdout:  # type: ignore[union-attr]
            result = json.loads(line)
            if "done" in result:
                break
            if "cpu" in result:
                marks[0].append(result["cpu"])
            else:
                times[result["size"]].append(result["seconds"])
    finally:
        for process in processes:
            process.kill()
            process.wait()
    for process in processes[1:]:  # what each receiver printed: its address, then its CPU marks
        lines = [json.loads(line) for line in process.stdout]  # type: ignore[union-attr]
        marks.append([line["cpu"] for line in lines if "cpu" in line])
    order = [size for size in sizes for _ in range(repeats)]
    cpu: dict[int, list[float]] = {size: [] for size in sizes}
    for k, size in enumerate(order):
        cpu[size].append(sum(m[k + 1] - m[k] for m in marks if len(m) > k + 1))
    return times, cpu


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


STREAM_PROTOCOL = TProtocol("/mycelium/bench/stream/1.0.0")
WRITE_BYTES = 1 << 20  # what the sender hands to one write() call, on either path


async def _stream_sender(size: int) -> None:
    """Serve `size` random bytes on every stream of STREAM_PROTOCOL opened to us, then a TCP socket."""
    blob = os.urandom(size)
    host = build_host(create_new_key_pair())
    async with host.run([multiaddr.Multiaddr(LOOPBACK)]):
        done = trio.Event()

        async def handle(stream) -> None:  # type: ignore[no-untyped-def]
            view = memoryview(blob)
            for offset in range(0, size, WRITE_BYTES):
                await stream.write(bytes(view[offset : offset + WRITE_BYTES]))
            await stream.read(1)  # the reader's acknowledgement: it has every byte
            done.set()

        host.set_stream_handler(STREAM_PROTOCOL, handle)
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        print(json.dumps({"libp2p": str(host.get_addrs()[0]), "tcp": port}), flush=True)
        await done.wait()
        connection = await listener.accept()
        view = memoryview(blob)
        for offset in range(0, size, WRITE_BYTES):
            await connection.send_all(view[offset : offset + WRITE_BYTES])
        await connection.receive_some(1)
        await connection.aclose()


async def _stream_reader(addrs: dict[str, object], size: int) -> tuple[float, float]:
    """Seconds to read `size` bytes from one libp2p stream, then from one plain socket."""
    host = build_host(create_new_key_pair())
    async with host.run([multiaddr.Multiaddr(LOOPBACK)]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(str(addrs["libp2p"])))
        await host.connect(info)
        started = time.perf_counter()
        stream = await host.new_stream(info.peer_id, [STREAM_PROTOCOL])
        got = 0
        while got < size:
            got += len(await stream.read(WRITE_BYTES))
        libp2p_seconds = time.perf_counter() - started
        await stream.write(b"k")
        await stream.reset()
    started = time.perf_counter()
    connection = await trio.open_tcp_stream("127.0.0.1", int(str(addrs["tcp"])))
    got = 0
    while got < size:
        got += len(await connection.receive_some(WRITE_BYTES))
    tcp_seconds = time.perf_counter() - started
    await connection.send_all(b"k")
    await connection.aclose()
    return libp2p_seconds, tcp_seconds


def _stream_times(size: int) -> tuple[float, float]:
    sender = _spawn("--stream-peer", "--sizes", str(size))
    try:
        addrs = json.loads(sender.stdout.readline())  # type: ignore[union-attr]
        return trio.run(_stream_reader, addrs, size)
    finally:
        sender.kill()
        sender.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--sizes-mib", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stream-mib", type=float, default=64)
    parser.add_argument("--peer", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stream-peer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer is not None:
        trio.run(_peer, args.peer, args.bootstrap, args.members, args.sizes, args.repeats)
        return
    if args.stream_peer:
        trio.run(_stream_sender, args.sizes[0])
        return
    sizes = [int(mib * (1 << 20)) for mib in args.sizes_mib]
    pullers = args.members - 1
    to_one, cpu_one = _libp2p_times(2, sizes, args.repeats)
    to_all, cpu_all = _libp2p_times(args.members, sizes, args.repeats)
    table = Table(title=f"One model to 1 and to {pullers} members on loopback (median of {args.repeats})")
    for column in (
        "size",
        "to 1 s",
        f"to {pullers} s",
        f"ratio {pullers}/1",
        f"plain TCP to {pullers} s",
        "vs TCP",
        f"MiB/s per member ({pullers})",
        "CPU s, all processes: to 1",
        f"to {pullers}",
    ):
        table.add_column(column, justify="right")
    for size in sizes:
        tcp = median(_tcp_time(pullers, size) for _ in range(args.repeats))
        one, ours = median(to_one[size]), median(to_all[size])
        table.add_row(
            f"{size / (1 << 20):g} MiB",
            f"{one:.3f}",
            f"{ours:.3f}",
            f"{ours / one:.2f}",
            f"{tcp:.3f}",
            f"{ours / tcp:.0f}x",
            f"{size / (1 << 20) / ours:.1f}",
            f"{median(cpu_one[size]):.2f}",
            f"{median(cpu_all[size]):.2f}",
        )
    console = Console(width=160)
    console.print(table)
    stream_size = int(args.stream_mib * (1 << 20))
    runs = [_stream_times(stream_size) for _ in range(3)]
    libp2p_rate = stream_size / (1 << 20) / median(run[0] for run in runs)
    tcp_rate = stream_size / (1 << 20) / median(run[1] for run in runs)
    stream_table = Table(title=f"One stream, {args.stream_mib:g} MiB between two processes (median of 3)")
    for column in ("Noise + Yamux stream MiB/s", "plain socket MiB/s", "ratio"):
        stream_table.add_column(column, justify="right")
    stream_table.add_row(f"{libp2p_rate:.0f}", f"{tcp_rate:.0f}", f"{libp2p_rate / tcp_rate:.0%}")
    console.print(stream_table)


if __name__ == "__main__":
    main()
