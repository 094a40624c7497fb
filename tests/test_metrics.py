"""Prometheus metrics of a node (`--metrics HOST:PORT`): what each event and network report changes,
how they are served, and live values scraped from real nodes while they learn."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import pytest
import trio
from conftest import run_cli
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.pubsub.pb import rpc_pb2
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mycelium.errors import ConfigError, InvalidMessage
from mycelium.events import EventLog
from mycelium.net.gossip import Topic, run_topic
from mycelium.net.signing import Kind, Signed, peer_id_of, seal
from mycelium.net.traffic import NetCall, Refusal, Traffic
from mycelium.node.inbox import REFUSALS
from mycelium.node.metrics import NodeMetrics, parse_metrics_address, serve_metrics
from mycelium.policy.membership import RecordVerdict
from mycelium.policy.roster import Heard
from mycelium.proto import mycelium_pb2 as pb

GROUP = "ab" * 16
ROUND = {
    "event": "round",
    "group": GROUP,
    "round": 4,
    "members": 3,
    "left_out": 0,
    "accuracy": 0.8125,
    "loss": 0.61,
    "local_accuracy": 0.79,
    "peers": 5,
}


def value(metrics: NodeMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# --- events -> metrics ----------------------------------------------------------------------------

EVENT_TABLE: list[tuple[str, list[dict[str, Any]], dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = [
    (
        "a round counts, and sets accuracy, loss and members",
        [ROUND],
        {
            ("mycelium_rounds_total", ()): 1,
            ("mycelium_round", ()): 4,
            ("mycelium_accuracy", ()): 0.8125,
            ("mycelium_loss", ()): 0.61,
            ("mycelium_local_accuracy", ()): 0.79,
            ("mycelium_group_members", ()): 3,
        },
    ),
    (
        "the last round's values win",
        [ROUND, {**ROUND, "round": 5, "accuracy": 0.9, "members": 4}],
        {
            ("mycelium_rounds_total", ()): 2,
            ("mycelium_round", ()): 5,
            ("mycelium_accuracy", ()): 0.9,
            ("mycelium_group_members", ()): 4,
        },
    ),
    (
        "updates a round left out count as distrusted",
        [{**ROUND, "left_out": 2}, {**ROUND, "left_out": 1}],
        {("mycelium_rejected_total", (("reason", "distrusted"),)): 3},
    ),
    (
        "a NaN accuracy leaves the gauge as it was",
        [ROUND, {**ROUND, "accuracy": float("nan")}],
        {("mycelium_accuracy", ()): 0.8125},
    ),
    (
        "joining sets members, and the group of the node info",
        [
            {"event": "listening", "peer_id": "12D3KooWX", "addrs": []},
            {"event": "joined", "group": GROUP, "created": False, "members": 2, "round": 0},
        ],
        {
            ("mycelium_group_members", ()): 2,
            ("mycelium_node_info", (("group", GROUP), ("peer_id", "12D3KooWX"))): 1,
        },
    ),
    (
        "leaving a group sets members to 0",
        [
            {"event": "joined", "group": GROUP, "created": True, "members": 2, "round": 0},
            {"event": "left", "group": GROUP, "reason": "migrate", "refused": {}},
        ],
        {("mycelium_group_members", ()): 0, ("mycelium_node_info", (("group", ""), ("peer_id", ""))): 1},
    ),
    (
        "a migration counts",
        [{"event": "migrated", "from": GROUP, "to": "cd" * 16, "gain": 0.05}],
        {("mycelium_migrations_total", ()): 1},
    ),
    (
        "an unusable update counts as bad_update",
        [{"event": "update_rejected", "group": GROUP, "round": 1, "author": "x", "reason": "bad hash"}],
        {("mycelium_rejected_total", (("reason", "bad_update"),)): 1},
    ),
    (
        "a restarted round counts as a stall",
        [{"event": "stalled", "group": GROUP, "round": 3, "phase": "collecting", "seconds": 190.0}],
        {("mycelium_stalls_total", ()): 1},
    ),
    (
        "other events change nothing",
        [
            {"event": "bootstrapped", "peers": ["a"], "routing_table": 1},
            {"event": "evaluated", "candidates": []},
        ],
        {("mycelium_rounds_total", ()): 0, ("mycelium_migrations_total", ()): 0},
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"), [c[1:] for c in EVENT_TABLE], ids=[c[0] for c in EVENT_TABLE]
)
def test_events_map_to_metrics(events: list[dict[str, Any]], expected: dict) -> None:
    metrics = NodeMetrics()
    log = EventLog(None)
    log.listeners.append(metrics.on_event)
    for event in events:
        fields = {k: v for k, v in event.items() if k != "event"}
        log.emit(event["event"], **fields)
    samples = scrape(generate_latest(metrics.registry).decode())
    for key, expected_value in expected.items():
        assert samples[key] == pytest.approx(expected_value), key


def test_every_rejection_reason_is_exposed_from_the_start_and_no_other() -> None:
    samples = scrape(generate_latest(NodeMetrics().registry).decode())
    reasons = {dict(labels)["reason"] for name, labels in samples if name == "mycelium_rejected_total"}
    assert reasons == {r.value for r in Refusal}
    assert all(v == 0 for (name, _), v in samples.items() if name == "mycelium_rejected_total")


def test_the_exposition_names_each_metric_with_its_type() -> None:
    text = generate_latest(NodeMetrics().registry).decode()
    for name, kind in [
        ("mycelium_rounds_total", "counter"),
        ("mycelium_accuracy", "gauge"),
        ("mycelium_loss", "gauge"),
        ("mycelium_group_members", "gauge"),
        ("mycelium_migrations_total", "counter"),
        ("mycelium_rejected_total", "counter"),
        ("mycelium_dht_duration_seconds", "histogram"),
        ("mycelium_transfer_duration_seconds", "histogram"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text, name


# --- what the network layer reports ---------------------------------------------------------------


def test_traffic_reports_refusals_and_timings_to_its_observer() -> None:
    metrics = NodeMetrics()
    traffic = Traffic(observer=metrics)
    traffic.refused(Refusal.STALE)
    traffic.refused(Refusal.STALE)
    traffic.refused(Refusal.FORGED)
    with traffic.timed(NetCall.DHT_GET):
        pass
    with traffic.timed(NetCall.DHT_PUT):
        pass
    with pytest.raises(ValueError), traffic.timed(NetCall.TRANSFER):
        raise ValueError("a failed pull is timed too")
    assert value(metrics, "mycelium_rejected_total", reason="stale") == 2
    assert value(metrics, "mycelium_rejected_total", reason="forged") == 1
    assert value(metrics, "mycelium_dht_duration_seconds_count", operation="get") == 1
    assert value(metrics, "mycelium_dht_duration_seconds_count", operation="put") == 1
    assert value(metrics, "mycelium_transfer_duration_seconds_count") == 1


def test_traffic_without_an_observer_reports_nowhere() -> None:
    traffic = Traffic()
    traffic.refused(Refusal.INVALID)
    with traffic.timed(NetCall.DHT_GET):
        pass


def test_bytes_and_peers_are_read_when_scraped() -> None:
    metrics, traffic, peers = NodeMetrics(), Traffic(), [3]
    metrics.read_when_scraped(traffic, lambda: peers[0])
    traffic.bytes_in, traffic.bytes_out = 1200, 3400
    assert value(metrics, "mycelium_received_bytes_total") == 1200
    assert value(metrics, "mycelium_sent_bytes_total") == 3400
    assert value(metrics, "mycelium_connected_peers") == 3
    traffic.bytes_in, peers[0] = 5000, 1
    assert value(metrics, "mycelium_received_bytes_total") == 5000
    assert value(metrics, "mycelium_connected_peers") == 1


def test_two_nodes_in_one_process_keep_their_own_metrics() -> None:
    first, second = NodeMetrics(), NodeMetrics()
    first.on_event(ROUND)
    assert value(first, "mycelium_rounds_total") == 1
    assert value(second, "mycelium_rounds_total") == 0


def test_every_refused_heard_and_record_verdict_has_a_reason_and_accepted_ones_none() -> None:
    assert set(REFUSALS) >= {h for h in Heard if h is not Heard.TAKEN}
    accepted = {RecordVerdict.ADOPTED, RecordVerdict.SAME, RecordVerdict.EVICTED}
    assert {v for v in RecordVerdict if v in REFUSALS} == set(RecordVerdict) - accepted


def _undecodable(_signed: Signed) -> bool:
    raise InvalidMessage("what a group topic's relay check raises for a payload that does not decode")


class _Subscription:
    async def get(self) -> rpc_pb2.Message:
        await trio.sleep_forever()
        raise AssertionError


class _Pubsub:
    """Just enough of py-libp2p's Pubsub to capture the validator run_topic installs."""

    def __init__(self) -> None:
        self.validator: Any = None

    def set_topic_validator(self, _topic: str, validator: Any, _is_async: bool) -> None:
        self.validator = validator

    def remove_topic_validator(self, _topic: str) -> None:
        self.validator = None

    async def subscribe(self, _topic: str) -> _Subscription:
        return _Subscription()

    async def unsubscribe(self, _topic: str) -> None:
        return None


@pytest.mark.parametrize(
    ("data", "relay", "reason"),
    [
        ("garbage", lambda _s: True, None),
        ("heartbeat", lambda _s: False, "stale"),
        ("heartbeat", _undecodable, "undecodable"),
        ("heartbeat", lambda _s: True, "accepted"),
    ],
    ids=["bad envelope", "not fresh", "relay check raises", "relayed"],
)
def test_the_gossip_validator_counts_what_it_drops_by_reason(
    data: str, relay: Any, reason: str | None
) -> None:
    author = create_new_key_pair()
    raw = (
        b"\x01garbage"
        if data == "garbage"
        else seal(author, Kind.MEMBER_HEARTBEAT, pb.MemberHeartbeat(round=1))
    )
    message = rpc_pb2.Message(from_id=peer_id_of(author).raw, data=raw, topicIDs=["t"])
    metrics, pubsub = NodeMetrics(), _Pubsub()
    topic = Topic(
        "t", pubsub, author, Traffic(observer=metrics), frozenset({Kind.MEMBER_HEARTBEAT}), relay=relay
    )  # type: ignore[arg-type]
    outcome: list[bool] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ready = trio.Event()
            nursery.start_soon(run_topic, topic, lambda _s: None, ready, peer_id_of(create_new_key_pair()))
            await ready.wait()
            outcome.append(pubsub.validator(None, message))
            nursery.cancel_scope.cancel()

    trio.run(main)
    counted = {r.value: value(metrics, "mycelium_rejected_total", reason=r.value) for r in Refusal}
    if reason == "accepted":
        assert outcome == [True] and not any(counted.values())
        return
    assert outcome == [False]
    assert counted == {r: (1 if r == (reason or "invalid") else 0) for r in counted}


# --- address and serving --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:9100", ("::1", 9100)),
    ],
)
def test_metrics_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_metrics_address(text) == expected


@pytest.mark.parametrize("text", ["9100", ":9100", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", "a:-1"])
def test_bad_metrics_addresses_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_metrics_address(text)


def test_port_0_serves_on_a_free_port_and_says_which() -> None:
    events = EventLog(None)
    with serve_metrics(("127.0.0.1", 0), events) as metrics:
        assert metrics is not None
        port = int(metrics.url.rsplit(":", 1)[1].removesuffix("/metrics"))
        assert metrics.url == f"http://127.0.0.1:{port}/metrics" and port > 0
        events.emit("round", **{k: v for k, v in ROUND.items() if k != "event"})
        with urllib.request.urlopen(metrics.url, timeout=5) as response:
            samples = scrape(response.read().decode())
        assert samples[("mycelium_rounds_total", ())] == 1
    assert events.listeners == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # stopped with the block


def test_no_address_means_no_metrics() -> None:
    events = EventLog(None)
    with serve_metrics(None, events) as metrics:
        assert metrics is None and events.listeners == []


def test_a_port_in_use_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            with serve_metrics(("127.0.0.1", port), EventLog(None)):
                pass


def test_the_cli_refuses_a_bad_metrics_address_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("node", "--data-dir", str(tmp_path), "--metrics", "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mycelium: error: --metrics 'nowhere' must look like HOST:PORT, e.g. 127.0.0.1:9100"
    ]


def test_the_cli_refuses_a_port_in_use_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "node", "--data-dir", str(tmp_path), "--group", "none", "--listen", "/ip4/127.0.0.1/tcp/0",
            "--metrics", f"127.0.0.1:{port}", "--events", str(tmp_path / "events.jsonl"),
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"mycelium: error: cannot serve metrics on 127.0.0.1:{port}"
    )


# --- live values from real nodes ------------------------------------------------------------------


def test_a_learning_nodes_endpoint_shows_live_values(spawn) -> None:  # type: ignore[no-untyped-def]
    common = ["--metrics", "127.0.0.1:0", "--min-members", "2", "--partition", "iid", "--local-epochs", "1"]
    common += ["--inline-limit", "0"]  # updates over the stream protocol (a new group's model is known)
    first = spawn("learner0", "--shard", "0/2", *common)
    second = spawn("learner1", "--shard", "1/2", "--bootstrap", first.addr, *common)
    urls = [node.wait_for("metrics", timeout=60)["url"] for node in (first, second)]
    assert all(url.startswith("http://127.0.0.1:") and url.endswith("/metrics") for url in urls)
    assert len(set(urls)) == 2
    second.wait_for(lambda e: e["event"] == "round" and e["round"] >= 3 and e["members"] >= 2, timeout=90)
    first.wait_for(lambda e: e["event"] == "round" and e["round"] >= 3, timeout=30)

    scraped = []
    for url in urls:
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            scraped.append(scrape(response.read().decode()))
    for samples in scraped:
        assert samples[("mycelium_rounds_total", ())] >= 3
        assert 0 < samples[("mycelium_accuracy", ())] <= 1
        assert samples[("mycelium_loss", ())] > 0
        assert samples[("mycelium_group_members", ())] >= 2
        assert samples[("mycelium_connected_peers", ())] >= 1
        assert samples[("mycelium_received_bytes_total", ())] > 0
        assert samples[("mycelium_sent_bytes_total", ())] > 0
        dht_series = {
            dict(labels)["operation"] for n, labels in samples if n == "mycelium_dht_duration_seconds_count"
        }
        assert dht_series == {NetCall.DHT_PUT.value, NetCall.DHT_GET.value}
        assert ("mycelium_transfer_duration_seconds_count", ()) in samples
        assert {dict(labels)["reason"] for n, labels in samples if n == "mycelium_rejected_total"} == {
            r.value for r in Refusal
        }
    # whoever created the group wrote its record into the DHT (a joiner may learn it from a peer instead)
    assert (
        sum(v for s in scraped for (n, _), v in s.items() if n == "mycelium_dht_duration_seconds_count") > 0
    )
    # the members pulled each other's updates over the stream protocol
    assert sum(s[("mycelium_transfer_duration_seconds_count", ())] for s in scraped) > 0
    for node in (first, second):
        assert node.stop() == 0
