"""A node's Prometheus metrics (`--metrics HOST:PORT`): its own registry, served over HTTP.

Where each value comes from:
- the node's events (`NodeMetrics.on_event`, an `EventLog` listener; `FOLLOWED` is the table):
  rounds, accuracy, loss, group members, migrations, stalls, and the updates a round could not use
  or left out;
- the network layer as it happens (net/traffic.py's `Observer`): DHT and transfer latencies, and
  what gossip validators, the DHT validator, the group inbox and admission refused;
- read when scraped: payload bytes in and out (`Traffic`) and connected peers.

Every label takes its values from a fixed set (DHT operation, `Refusal`), so the number of series is
bounded whatever peers send. Each node has its own `CollectorRegistry`, never prometheus_client's
global one, so that several peers can share a process. The HTTP server is prometheus_client's own,
in a daemon thread owned by `serve_metrics` (it only reads the registry, which is thread-safe).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mycelium.errors import ConfigError
from mycelium.events import EventLog
from mycelium.net.traffic import NetCall, Refusal, Traffic

DHT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
TRANSFER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

Event = dict[str, Any]


def parse_metrics_address(text: str) -> tuple[str, int]:
    """HOST:PORT ([::1]:PORT for IPv6; port 0 picks a free one), or ConfigError."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--metrics {text!r} must look like HOST:PORT, e.g. 127.0.0.1:9100")
    return host, int(port)


class _ReadWhenScraped(Collector):
    """Values the node keeps anyway, read at each scrape instead of being copied as they change."""

    def __init__(self, traffic: Traffic, connected: Callable[[], int]) -> None:
        self._traffic = traffic
        self._connected = connected

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "mycelium_received_bytes",
            "Payload bytes received: gossip messages and model transfers (not wire bytes)",
            value=self._traffic.bytes_in,
        )
        yield CounterMetricFamily(
            "mycelium_sent_bytes",
            "Payload bytes sent: gossip messages and model transfers (not wire bytes)",
            value=self._traffic.bytes_out,
        )
        yield GaugeMetricFamily(
            "mycelium_connected_peers", "libp2p peers connected now", value=self._connected()
        )


class NodeMetrics:
    """One node's metrics; also the `Observer` its `Traffic` reports to."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.url = ""  # where it is served, once it is
        r = self.registry
        self.node = Info("mycelium_node", "This node: its peer id and the group it is in", registry=r)
        self.rounds = Counter("mycelium_rounds", "Rounds this node completed", registry=r)
        self.round = Gauge("mycelium_round", "Number of the last round this node completed", registry=r)
        self.accuracy = Gauge(
            "mycelium_accuracy", "Accuracy of the group's model on the common test set", registry=r
        )
        self.loss = Gauge("mycelium_loss", "Loss of the group's model on the common test set", registry=r)
        self.local_accuracy = Gauge(
            "mycelium_local_accuracy",
            "Accuracy of the group's model on this node's own test shard",
            registry=r,
        )
        self.members = Gauge(
            "mycelium_group_members", "Live members of this node's group (0 between groups)", registry=r
        )
        self.migrations = Counter("mycelium_migrations", "Moves to a group that serves us better", registry=r)
        self.stalls = Counter("mycelium_stalls", "Rounds the watchdog restarted", registry=r)
        self.dht = Histogram(
            "mycelium_dht_duration_seconds",
            "DHT calls (put, get) as the caller waited for them, timeouts included",
            ["operation"],
            buckets=DHT_BUCKETS,
            registry=r,
        )
        self.transfer = Histogram(
            "mycelium_transfer_duration_seconds",
            "Model and update pulls over /mycelium/model/1.0.0, every holder and retry included",
            buckets=TRANSFER_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "mycelium_rejected",
            "Messages, records, updates and join requests refused, by reason",
            ["reason"],
            registry=r,
        )
        for reason in Refusal:  # every series exists from the start (at 0), and only these
            self.rejected.labels(reason.value)
        for call in (NetCall.DHT_PUT, NetCall.DHT_GET):
            self.dht.labels(call.value)
        self._peer_id = ""

    # --- what the network layer reports (net/traffic.py) ------------------------------------------

    def took(self, call: NetCall, seconds: float) -> None:
        if call is NetCall.TRANSFER:
            self.transfer.observe(seconds)
        else:
            self.dht.labels(call.value).observe(seconds)

    def refused(self, reason: Refusal, count: int = 1) -> None:
        self.rejected.labels(reason.value).inc(count)

    def read_when_scraped(self, traffic: Traffic, connected: Callable[[], int]) -> None:
        """Report `traffic`'s bytes and `connected()` peers (called once the stack runs)."""
        self.registry.register(_ReadWhenScraped(traffic, connected))

    # --- what the node's events say ---------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        follow = FOLLOWED.get(event.get("event", ""))
        if follow is not None:
            follow(self, event)

    def _on_listening(self, event: Event) -> None:
        self._peer_id = event.get("peer_id", "")
        self.node.info({"peer_id": self._peer_id, "group": ""})

    def _on_joined(self, event: Event) -> None:
        self.node.info({"peer_id": self._peer_id, "group": event["group"]})
        self.members.set(event["members"])

    def _on_round(self, event: Event) -> None:
        self.rounds.inc()
        self.round.set(event["round"])
        self.members.set(event["members"])
        for gauge, field in (
            (self.accuracy, "accuracy"),
            (self.loss, "loss"),
            (self.local_accuracy, "local_accuracy"),
        ):
            value = event.get(field)
            if isinstance(value, int | float) and math.isfinite(value):
                gauge.set(value)
        if event.get("left_out"):
            self.refused(Refusal.DISTRUSTED, event["left_out"])

    def _on_left(self, _event: Event) -> None:
        self.node.info({"peer_id": self._peer_id, "group": ""})
        self.members.set(0)

    def _on_update_rejected(self, _event: Event) -> None:
        self.refused(Refusal.BAD_UPDATE)

    def _on_migrated(self, _event: Event) -> None:
        self.migrations.inc()

    def _on_stalled(self, _event: Event) -> None:
        self.stalls.inc()


# event -> what it changes; every other event changes nothing
FOLLOWED: dict[str, Callable[[NodeMetrics, Event], None]] = {
    "listening": NodeMetrics._on_listening,
    "joined": NodeMetrics._on_joined,
    "round": NodeMetrics._on_round,
    "left": NodeMetrics._on_left,
    "update_rejected": NodeMetrics._on_update_rejected,
    "migrated": NodeMetrics._on_migrated,
    "stalled": NodeMetrics._on_stalled,
}


@contextmanager
def serve_metrics(address: tuple[str, int] | None, events: EventLog) -> Iterator[NodeMetrics | None]:
    """While the block runs, serve a node's metrics at `address` (None: no metrics at all).

    The metrics follow `events`; port 0 picks a free port (`NodeMetrics.url` says which). An address
    that cannot be served is a ConfigError. The server stops when the block ends.
    """
    if address is None:
        yield None
        return
    host, port = address
    metrics = NodeMetrics()
    try:
        server, thread = start_http_server(port, host, registry=metrics.registry)
    except OSError as error:  # in use, not an address of this machine, unknown name
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
    bound = server.server_address[1]
    metrics.url = f"http://{f'[{host}]' if ':' in host else host}:{bound}/metrics"
    events.listeners.append(metrics.on_event)
    try:
        yield metrics
    finally:
        events.listeners.remove(metrics.on_event)
        server.shutdown()  # serve_forever notices within its 0.5 s poll
        server.server_close()
        thread.join(1.0)
