"""Misbehaving on purpose, so that tests and benchmarks run real attackers over the real network.

`mycelium-node --attack NAME` makes an otherwise normal node lie in one way. The option is hidden
from --help and refused unless the environment says this is a test (`MYCELIUM_ALLOW_ATTACKS=1`),
so that no deployment can turn it on by accident.

- `lie-round`: every heartbeat claims a round a million ahead of the group and names a garbage
  model (random weights of the right shapes, which the node serves to whoever asks). A member that
  followed whoever claims to be ahead would adopt it (group protocol v2 does not: catch-up needs
  the record or a majority).
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from mycelium.errors import ConfigError
from mycelium.learn import Weights
from mycelium.policy.messages import Heartbeat

ENV = "MYCELIUM_ALLOW_ATTACKS"
ATTACKS = ("lie-round",)
ROUNDS_AHEAD = 10**6


def check_attack(name: str) -> str:
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    if os.environ.get(ENV) != "1":
        raise ConfigError(f"--attack is for tests only: set {ENV}=1 to run a misbehaving node")
    return name


class LieRound:
    def __init__(self, shapes: dict[str, tuple[int, ...]], seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.garbage: Weights = Weights(
            (name, rng.normal(0.0, 5.0, size=shape).astype(np.float32)) for name, shape in shapes.items()
        )
        self.garbage_hash = b""

    def heartbeat(self, beat: Heartbeat) -> Heartbeat:
        return replace(beat, round=beat.round + ROUNDS_AHEAD, model_hash=self.garbage_hash or beat.model_hash)
