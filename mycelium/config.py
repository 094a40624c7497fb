"""Everything a node is told at start-up, in one frozen value (built by the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mycelium.learn import TrainSettings
from mycelium.learn.aggregate import DEFAULT_AGGREGATOR
from mycelium.learn.data import Partition
from mycelium.net.host import NetConfig
from mycelium.policy.groups import GroupRules
from mycelium.policy.records import JoinPolicy
from mycelium.policy.rounds import RoundTiming
from mycelium.policy.trust import TrustRules

# per data set: the standard settings of the reference figures (see README)
DEFAULT_TRAINING = {
    "digits": TrainSettings(local_epochs=5, batch_size=32, lr=0.1),
    "mnist": TrainSettings(local_epochs=1, batch_size=32, lr=0.05),
}


@dataclass(frozen=True)
class LearnConfig:
    dataset: str = "digits"
    partition: Partition = Partition("dirichlet", alpha=0.5)
    shard: int = 0
    shards: int = 1
    seed: int = 0
    model: str = "mlp"
    training: TrainSettings = DEFAULT_TRAINING["digits"]
    aggregator: str = DEFAULT_AGGREGATOR
    codec: str = "fp32"
    torch_threads: int = 1
    inline_limit: int = 64 * 1024  # updates up to this size ride inside the gossip announcement


@dataclass(frozen=True)
class Timing:
    heartbeat: float = 5.0
    member_expiry: float = 30.0  # a member silent this long is dropped (6 heartbeats: CPU-starved nodes lag)
    record_ttl: float = 90.0  # expiry written into group records
    republish: float = 15.0  # the leader rewrites the DHT record at least this often
    index_refresh: float = 60.0
    round_interval: float = 1.0  # rounds start at most this often (0 = as fast as the group can)
    rounds: RoundTiming = field(default_factory=RoundTiming)


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path
    identity: Path | None = None
    net: NetConfig = field(default_factory=NetConfig)
    task: str = "digits-mlp"
    group: str = "auto"  # new | auto | none | <group id>
    name: str = ""
    capacity: int = 10
    policy: JoinPolicy = JoinPolicy.OPEN
    invite: bytes = b""
    rounds: int = 0  # stop after this many rounds (0 = run until stopped)
    min_members: int = 1  # before a group's first round, wait for this many members ...
    min_members_timeout: float = 60.0  # ... but no longer than this
    hold: bool = False  # before the first round, wait for SIGUSR1 (how `mycelium mesh` starts nodes together)
    hold_timeout: float = 600.0
    evaluate_every: int = 5
    split: bool = True
    rules: GroupRules = field(default_factory=GroupRules)
    trust: TrustRules | None = field(default_factory=TrustRules)  # None: --no-trust
    learn: LearnConfig = field(default_factory=LearnConfig)
    timing: Timing = field(default_factory=Timing)
    verbose: bool = False
    metrics: tuple[str, int] | None = None  # --metrics HOST:PORT: serve Prometheus metrics (port 0 picks one)
    attack: str = ""  # tests only: misbehave on purpose (node/attacks.py)

    @property
    def identity_path(self) -> Path:
        return self.identity or self.data_dir / "identity.key"

    @property
    def learns(self) -> bool:
        return self.group != "none"
