"""One peer from start to stop: identity, libp2p stack, bootstrap, then learning or DHT service.

The only place that wires net/, learn/ and policy/ together. A DHT-only peer (`--group none`, e.g.
a bootstrap node) never imports torch.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from libp2p.crypto.keys import KeyPair

from mycelium.config import NodeConfig
from mycelium.errors import ConfigError, MyceliumError, leaf_exceptions
from mycelium.events import EventLog
from mycelium.net.host import Stack, describe_error, open_stack
from mycelium.net.identity import load_or_create_identity
from mycelium.net.registry import Registry
from mycelium.net.traffic import Traffic
from mycelium.net.transfer import BlobStore, TransferService
from mycelium.node.metrics import NodeMetrics, serve_metrics
from mycelium.node.tasks import dump_tasks

if TYPE_CHECKING:
    from mycelium.node.peer import LearningPeer

log = logging.getLogger(__name__)

EXIT_DEADLINE = 15.0  # from "finished" or a stop signal to the end of the process, whatever py-libp2p does


def check_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"data dir {path} is not writable: {error.strerror}") from None


class RunningNode:
    """What the dashboard reads: the stack, and the learning peer when there is one."""

    def __init__(self, config: NodeConfig, events: EventLog, stack: Stack, traffic: Traffic) -> None:
        self.config = config
        self.events = events
        self.stack = stack
        self.traffic = traffic
        self.learning: LearningPeer | None = None


def load_learning(configs: Sequence[NodeConfig]) -> None:
    """Import torch before the event loop runs when a peer learns: the import takes 1.5-2 s of CPU,
    and inside the loop every peer of the process would answer nobody meanwhile (their DHT
    lookups then wait out their timeouts: seen while a 30-peer mesh formed)."""
    if any(config.learns for config in configs):
        import mycelium.learn.train  # noqa: F401


async def _learning_peer(
    config: NodeConfig,
    events: EventLog,
    stack: Stack,
    key_pair: KeyPair,
    traffic: Traffic,
    transfer: TransferService,
    release: trio.Event | None,
) -> LearningPeer:
    # imported here: torch and the data sets load only on nodes that learn
    from mycelium.learn.data import node_data
    from mycelium.learn.train import Learner, limit_compute_threads
    from mycelium.net.gossip import Topic, discovery_topic
    from mycelium.net.signing import Kind
    from mycelium.node.attacks import build_attack
    from mycelium.node.peer import LearningPeer
    from mycelium.node.services import Services
    from mycelium.node.trust import load_reputation
    from mycelium.policy.trust import TrustRules

    learn = config.learn
    limit_compute_threads(learn.torch_threads)
    data = await trio.to_thread.run_sync(
        node_data, learn.dataset, learn.partition, learn.shard, learn.shards, learn.seed
    )
    learner = Learner(learn.model, data, seed=learn.seed * 1000 + learn.shard)
    services = Services(
        config=config,
        key_pair=key_pair,
        stack=stack,
        registry=Registry(stack.dht, key_pair, nursery=stack.nursery, traffic=traffic),
        transfer=transfer,
        traffic=traffic,
        events=events,
        learner=learner,
        discovery=Topic(
            discovery_topic(config.task), stack.pubsub, key_pair, traffic, frozenset({Kind.GROUP_RECORD})
        ),
        reputation=load_reputation(config.data_dir, config.trust or TrustRules()),
    )
    services.attack = build_attack(config.attack, learner.shapes, seed=learn.shard)
    if services.attack is not None:
        learner.data = services.attack.data(learner.data)
        served = services.attack.served_model()
        if served is not None:
            services.attack.served_hash = services.store_model(served)
            transfer.store.pin("attack", services.attack.served_hash)
    return LearningPeer(services, release)


async def run_node(
    config: NodeConfig,
    events: EventLog,
    on_start: Callable[[RunningNode], None] | None = None,
    release: trio.Event | None = None,
) -> None:
    """Run until the configured rounds are done (learning nodes) or until cancelled.

    `release`, when given, holds the first round until it is set (see --hold).
    """
    check_data_dir(config.data_dir)
    key_pair = load_or_create_identity(config.identity_path)
    with serve_metrics(config.metrics, events) as metrics:  # before the stack: a bad address fails fast
        await _run_node(config, events, key_pair, metrics, on_start, release)


async def _run_node(
    config: NodeConfig,
    events: EventLog,
    key_pair: KeyPair,
    metrics: NodeMetrics | None,
    on_start: Callable[[RunningNode], None] | None,
    release: trio.Event | None,
) -> None:
    traffic = Traffic(observer=metrics)
    async with open_stack(key_pair, config.net, config.verbose, traffic=traffic) as stack:
        events.emit("listening", peer_id=str(stack.peer_id), addrs=stack.listen_addrs())
        if metrics is not None:
            metrics.read_when_scraped(traffic, lambda: len(stack.host.get_connected_peers()))
            events.emit("metrics", url=metrics.url)
        if config.net.bootstrap:

            def report(message: str) -> None:
                log.warning(message)
                events.emit("bootstrap_retry", message=message)

            # the table fills in the background: a node learns its groups from its peers (node/discovery.py)
            reached = await stack.bootstrap(report, fill_table=False)
            events.emit("bootstrapped", peers=reached, routing_table=stack.dht.get_routing_table_size())
        stack.nursery.start_soon(stack.maintain_routing_table, bool(config.net.bootstrap))
        transfer = TransferService(stack.host, stack.opener, BlobStore(), traffic)
        node = RunningNode(config, events, stack, traffic)
        if config.learns:
            node.learning = await _learning_peer(config, events, stack, key_pair, traffic, transfer, release)
        if on_start is not None:
            on_start(node)
        if node.learning is None:
            await trio.sleep_forever()
        await node.learning.run()
        events.emit("finished", rounds=node.learning.rounds_done, migrations=node.learning.migrations)


async def run_until_signalled(
    config: NodeConfig, events: EventLog, on_start: Callable[[RunningNode], None] | None = None
) -> None:
    """`run_node`, stopped cleanly by SIGINT or SIGTERM; with --hold, released by SIGUSR1; SIGUSR2
    prints every task and what it waits on to stderr (for a node that seems stuck)."""
    await run_peers_until_signalled([(config, events)], on_start, isolate=False)


async def run_peers_until_signalled(
    peers: Sequence[tuple[NodeConfig, EventLog]],
    on_start: Callable[[RunningNode], None] | None = None,
    isolate: bool = True,
) -> list[int]:
    """Several peers in this one process (`mycelium mesh --peers-per-process`), each with its own
    identity, data dir, stack and event log; the process's signals reach every one of them.

    `isolate`: a peer that fails is logged and left out (its index is returned) while the others
    carry on, as its own process would have died alone. The exit deadline starts once every peer
    has finished, or at a stop signal.
    """
    deadline = ExitDeadline([events for _, events in peers], expected=len(peers))
    for _, events in peers:
        events.listeners.append(deadline.on_event)  # "finished" comes before the stack closes
    try:
        return await _run_with_signals(peers, on_start, deadline, isolate)
    finally:
        deadline.cancel()


class ExitDeadline:
    """Ends the process `EXIT_DEADLINE` seconds after it was asked to stop, if it has not ended.

    py-libp2p 0.8.1 can hold a DHT query inside a shielded cleanup forever (net/detached.py); the
    stack's nursery then waits for it at shutdown, and a node that has finished (or got SIGTERM)
    would never exit: seen in a 20-node mesh, two nodes still alive 10 minutes after "finished".
    A timer thread is outside trio, so it fires whatever the event loop waits on. With several
    peers in the process it waits for `expected` "finished" events: a peer done early must not end
    the others.
    """

    def __init__(
        self, events: EventLog | Sequence[EventLog], seconds: float = EXIT_DEADLINE, expected: int = 1
    ) -> None:
        self._events = [events] if isinstance(events, EventLog) else list(events)
        self._seconds = seconds
        self._expected = expected
        self._finished = 0
        self._timer: threading.Timer | None = None

    def start(self, why: str) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self._seconds, self._force, args=(why,))
            self._timer.daemon = True
            self._timer.start()

    def on_event(self, event: dict[str, object]) -> None:
        if event["event"] == "finished":
            self.peer_done()

    def peer_done(self) -> None:
        """A peer finished or failed; the deadline starts with the last one."""
        self._finished += 1
        if self._finished >= self._expected:
            self.start("finished")

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _force(self, why: str) -> None:
        for events in self._events:
            try:
                events.emit("exit_forced", after_s=self._seconds, stopping_because=why)
            except Exception:  # noqa: BLE001, S110 - the log may be closed already; exit all the same
                pass
        os._exit(0)


async def _run_with_signals(
    peers: Sequence[tuple[NodeConfig, EventLog]],
    on_start: Callable[[RunningNode], None] | None,
    deadline: ExitDeadline,
    isolate: bool,
) -> list[int]:
    releases = [trio.Event() if config.hold else None for config, _ in peers]
    failed: list[int] = []
    async with trio.open_nursery() as nursery:
        running = len(peers)

        async def watch_release() -> None:
            with trio.open_signal_receiver(signal.SIGUSR1) as signals:
                async for _ in signals:
                    for release in releases:
                        if release is not None:
                            release.set()

        async def watch_dump_requests() -> None:
            with trio.open_signal_receiver(signal.SIGUSR2) as signals:
                async for _ in signals:
                    dump_tasks()

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    for _, events in peers:
                        events.emit("stopping", signal=signal.Signals(signum).name)
                    deadline.start(signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

        async def node(index: int, config: NodeConfig, events: EventLog, release: trio.Event | None) -> None:
            nonlocal running
            try:
                await run_node(config, events, on_start, release)
            except Exception as error:
                if not isolate:
                    raise
                ours = [e for e in leaf_exceptions(error) if isinstance(e, MyceliumError)]
                reason = str(ours[0]) if ours else describe_error(error)
                if ours:  # our errors say what went wrong in a line
                    log.error("peer %d (%s) stopped: %s; the others carry on", index, config.data_dir, reason)
                else:
                    log.exception("peer %d (%s) failed; the others carry on", index, config.data_dir)
                events.emit("failed", error=reason)
                failed.append(index)
                deadline.peer_done()
            running -= 1
            if running == 0:
                nursery.cancel_scope.cancel()

        nursery.start_soon(watch_signals)
        nursery.start_soon(watch_dump_requests)
        if any(release is not None for release in releases):
            nursery.start_soon(watch_release)
        for index, ((config, events), release) in enumerate(zip(peers, releases, strict=True)):
            nursery.start_soon(node, index, config, events, release)
    return failed
