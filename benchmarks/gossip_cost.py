"""CPU a gossip message costs: one peer publishes, one subscribed peer receives, both in this process.

    python benchmarks/gossip_cost.py --messages 800 --bytes 400 --repeats 3

Two production stacks (`open_stack`: Noise, Yamux, our GossipSub and pubsub patches) on loopback.
The publisher sends at 80 messages a second, under the gossip rate limit of 100 a topic, and the
table shows the process's CPU (all threads) per delivered message, minus what the two stacks use at
rest. That is the CPU of one send and one delivery, the unit that gossip's duplicates multiply
(a member's heartbeat costs about 50 of them in a group of ten, see benchmarks/RESULTS.md).
To compare with other code, run the same command with PYTHONPATH pointing at its `mycelium`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from rich.console import Console
from rich.table import Table

from mycelium.net.host import NetConfig, open_stack

TOPIC = "gossip-cost"
PACE = 1 / 80  # seconds between publishes
AT_REST = 5.0  # seconds of CPU sampled with nothing published


async def one_run(messages: int, size: int) -> tuple[float, float, int]:
    """(CPU ms per message minus rest, wall seconds, messages delivered)."""
    config = NetConfig(listen=(multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0"),))
    async with (
        open_stack(create_new_key_pair(), config) as author,
        open_stack(create_new_key_pair(), config) as reader,
    ):
        await reader.host.connect(info_from_p2p_addr(author.host.get_addrs()[0]))
        subscription = await reader.pubsub.subscribe(TOPIC)
        await author.pubsub.subscribe(TOPIC)
        await trio.sleep(3)  # the two learn each other's subscriptions
        cpu = time.process_time()
        await trio.sleep(AT_REST)
        at_rest = (time.process_time() - cpu) / AT_REST
        delivered = 0
        all_delivered = trio.Event()

        async def read() -> None:
            nonlocal delivered
            while delivered < messages:
                await subscription.get()
                delivered += 1
            all_delivered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            wall, cpu = time.perf_counter(), time.process_time()
            for n in range(messages):
                await author.pubsub.publish(TOPIC, n.to_bytes(4, "big") + b"x" * size)
                await trio.sleep(PACE)
            with trio.move_on_after(10):
                await all_delivered.wait()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            nursery.cancel_scope.cancel()
    return 1e3 * (cpu - at_rest * wall) / max(delivered, 1), wall, delivered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=800)
    parser.add_argument("--bytes", type=int, default=400, help="payload of each message")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    table = Table(title=f"{args.messages} messages of {args.bytes} B, author to one reader")
    for column in ("run", "delivered", "wall s", "CPU ms a message"):
        table.add_column(column, justify="right")
    costs = []
    for run in range(1, args.repeats + 1):
        cost, wall, delivered = trio.run(one_run, args.messages, args.bytes)
        costs.append(cost)
        table.add_row(str(run), f"{delivered}/{args.messages}", f"{wall:.1f}", f"{cost:.2f}")
    table.add_row("median", "", "", f"{statistics.median(costs):.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
