"""Misbehaving on purpose, so that tests and benchmarks run real attackers over the real network.

`mycelium-node --attack NAME` makes an otherwise normal node lie in one way. The option is hidden
from --help and refused unless the environment says this is a test (`MYCELIUM_ALLOW_ATTACKS=1`),
so that no deployment can turn it on by accident. Everything else about the node is honest: it
joins, heartbeats, serves and aggregates like any member.

- `lie-round`: every heartbeat claims a round a million ahead of the group and names a garbage
  model (random weights of the right shapes, which the node serves to whoever asks). A member that
  followed whoever claims to be ahead would adopt it (group protocol v2 does not: catch-up needs
  the record or a majority).
- `sign-flip`: announces base - 10 × (its honest update): the opposite direction, ten times as long.
- `noise`: announces base + Gaussian noise (σ = 1 per weight) instead of what it trained.
- `label-flip`: trains on its own data with every label c replaced by (classes - 1 - c).
- `inflate-samples`: honest update, but claims 10^9 training samples (FedAvg weights by the claim).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from mycelium.errors import ConfigError
from mycelium.learn import Weights
from mycelium.learn.data import NodeData
from mycelium.policy.messages import Heartbeat

ENV = "MYCELIUM_ALLOW_ATTACKS"
ROUNDS_AHEAD = 10**6
SIGN_FLIP_SCALE = 10.0
NOISE_STD = 1.0
INFLATED_SAMPLES = 10**9


class Attack:
    """An honest node: every hook returns what it is given. Each attack overrides one or two."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], seed: int) -> None:
        self.shapes = shapes
        self.rng = np.random.default_rng(seed)
        self.served_hash = b""  # the hash of `served_model()`, once the node stores it

    def data(self, data: NodeData) -> NodeData:
        return data

    def update(self, base: Weights, trained: Weights) -> Weights:
        return trained

    def samples(self, samples: int) -> int:
        return samples

    def heartbeat(self, beat: Heartbeat) -> Heartbeat:
        return beat

    def served_model(self) -> Weights | None:
        """A model the node must keep servable (the `lie-round` garbage), if any."""
        return None


class LieRound(Attack):
    def __init__(self, shapes: dict[str, tuple[int, ...]], seed: int) -> None:
        super().__init__(shapes, seed)
        self.garbage: Weights = OrderedDict(
            (name, self.rng.normal(0.0, 5.0, size=shape).astype(np.float32)) for name, shape in shapes.items()
        )

    def served_model(self) -> Weights | None:
        return self.garbage

    def heartbeat(self, beat: Heartbeat) -> Heartbeat:
        return replace(beat, round=beat.round + ROUNDS_AHEAD, model_hash=self.served_hash or beat.model_hash)


class SignFlip(Attack):
    def update(self, base: Weights, trained: Weights) -> Weights:
        return OrderedDict(
            (name, (base[name] - SIGN_FLIP_SCALE * (trained[name] - base[name])).astype(np.float32))
            for name in trained
        )


class Noise(Attack):
    def update(self, base: Weights, trained: Weights) -> Weights:
        return OrderedDict(
            (name, (base[name] + self.rng.normal(0.0, NOISE_STD, size=base[name].shape)).astype(np.float32))
            for name in trained
        )


class LabelFlip(Attack):
    def data(self, data: NodeData) -> NodeData:
        flipped = replace(data.train, y=(data.classes - 1 - data.train.y).astype(data.train.y.dtype))
        return replace(data, train=flipped)


class InflateSamples(Attack):
    def samples(self, samples: int) -> int:
        return INFLATED_SAMPLES


ATTACKS: dict[str, type[Attack]] = {
    "lie-round": LieRound,
    "sign-flip": SignFlip,
    "noise": Noise,
    "label-flip": LabelFlip,
    "inflate-samples": InflateSamples,
}


def check_attack(name: str) -> str:
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    if os.environ.get(ENV) != "1":
        raise ConfigError(f"--attack is for tests only: set {ENV}=1 to run a misbehaving node")
    return name


def build_attack(name: str, shapes: dict[str, tuple[int, ...]], seed: int) -> Attack | None:
    """The attack `name` (already checked by `check_attack`), or None for an honest node."""
    return ATTACKS[name](shapes, seed) if name else None
