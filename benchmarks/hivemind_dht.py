"""hivemind's DHT as the registry's anchor: store/get latency on loopback, printed as one JSON line.

Runs in benchmarks/.venv-hivemind (bash benchmarks/setup-hivemind.sh), started by dht_latency.py:

    benchmarks/.venv-hivemind/bin/python benchmarks/hivemind_dht.py --nodes 10 --records 40 --value-bytes 400

N `hivemind.DHT` peers (each with its own p2pd), each bootstrapping from a random earlier one; after
settling, a writer peer stores `records` values of `value-bytes` bytes and a different reader peer
reads each with `get(latest=True)`, the newest version from the network.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import time

import hivemind
from hivemind.utils import get_dht_time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--value-bytes", type=int, required=True)
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    rng = random.Random(0)
    nodes: list[hivemind.DHT] = []
    try:
        for _ in range(args.nodes):
            peers = rng.choice(nodes).get_visible_maddrs() if nodes else []
            nodes.append(hivemind.DHT(initial_peers=peers, start=True))
        time.sleep(args.settle)
        writer = hivemind.DHT(initial_peers=nodes[-1].get_visible_maddrs(), start=True)
        reader = hivemind.DHT(initial_peers=nodes[0].get_visible_maddrs(), start=True)
        nodes += [writer, reader]
        keys = [f"/mycelium/group/{secrets.token_hex(16)}" for _ in range(args.records)]
        value = secrets.token_bytes(args.value_bytes)
        puts, gets, misses = [], [], 0
        for key in keys:
            start = time.perf_counter()
            stored = writer.store(key, value, get_dht_time() + 600)
            puts.append(time.perf_counter() - start)
            misses += not stored
        for key in keys:
            start = time.perf_counter()
            found = reader.get(key, latest=True)
            gets.append(time.perf_counter() - start)
            misses += found is None or found.value != value
        print(json.dumps({"put": puts, "get": gets, "misses": misses}))
    finally:
        for node in nodes:
            node.shutdown()


if __name__ == "__main__":
    main()
