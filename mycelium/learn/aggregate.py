"""Aggregation rules: FedAvg and robust alternatives, chosen by name.

Each rule maps a list of (weights, sample count) to new weights. Rules are deterministic for the
same list in the same order (callers sort contributions by author), accumulate in float64 and
return float32, so every member that aggregates the same set gets bit-identical weights.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from mycelium.errors import ConfigError
from mycelium.learn import Weights

Contribution = tuple[Weights, int]
Rule = Callable[[Sequence[Contribution]], Weights]

TRIM_FRACTION = 0.2


def _stack(contributions: Sequence[Contribution], name: str) -> np.ndarray:
    return np.stack([weights[name].astype(np.float64) for weights, _ in contributions])


def _per_tensor(contributions: Sequence[Contribution], reduce: Callable[[np.ndarray], np.ndarray]) -> Weights:
    names = list(contributions[0][0])
    return OrderedDict((name, reduce(_stack(contributions, name)).astype(np.float32)) for name in names)


def fedavg(contributions: Sequence[Contribution]) -> Weights:
    """Mean weighted by sample count (McMahan et al. 2017)."""
    samples = np.array([max(count, 0) for _, count in contributions], dtype=np.float64)
    share = samples / samples.sum() if samples.sum() > 0 else np.full(len(samples), 1 / len(samples))
    return _per_tensor(contributions, lambda stacked: np.tensordot(share, stacked, axes=1))


def median(contributions: Sequence[Contribution]) -> Weights:
    """Coordinate-wise median (Yin et al. 2018)."""
    return _per_tensor(contributions, lambda stacked: np.median(stacked, axis=0))


def trimmed_mean(contributions: Sequence[Contribution]) -> Weights:
    """Coordinate-wise mean after dropping the TRIM_FRACTION largest and smallest values."""
    trim = int(len(contributions) * TRIM_FRACTION)

    def reduce(stacked: np.ndarray) -> np.ndarray:
        ordered = np.sort(stacked, axis=0)
        return ordered[trim : len(ordered) - trim].mean(axis=0)

    return _per_tensor(contributions, reduce)


def krum(contributions: Sequence[Contribution]) -> Weights:
    """The contribution closest to its n - f - 2 nearest others (Blanchard et al. 2017).

    f, the number of Byzantine peers tolerated, is the largest with n >= 2f + 3; below 3
    contributions Krum cannot tell anyone apart and falls back to FedAvg.
    """
    n = len(contributions)
    if n < 3:
        return fedavg(contributions)
    byzantine = (n - 3) // 2
    flat = np.stack(
        [
            np.concatenate([w.astype(np.float64).ravel() for w in weights.values()])
            for weights, _ in contributions
        ]
    )
    norms = (flat**2).sum(axis=1)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2 * flat @ flat.T, 0.0)
    neighbours = n - byzantine - 2
    scores = [np.sort(np.delete(squared[i], i))[:neighbours].sum() for i in range(n)]
    chosen = contributions[int(np.argmin(scores))][0]
    return OrderedDict((name, values.astype(np.float32)) for name, values in chosen.items())


AGGREGATORS: dict[str, Rule] = {
    "fedavg": fedavg,
    "median": median,
    "trimmed-mean": trimmed_mean,
    "krum": krum,
}


def get_aggregator(name: str) -> Rule:
    if name not in AGGREGATORS:
        raise ConfigError(f"unknown aggregator {name!r}; choose one of {', '.join(AGGREGATORS)}")
    return AGGREGATORS[name]


def aggregate(rule: Rule, contributions: Sequence[Contribution]) -> Weights:
    if not contributions:
        raise ValueError("nothing to aggregate")
    return rule(contributions)
