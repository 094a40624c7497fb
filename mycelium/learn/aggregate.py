"""Aggregation rules: small objects with one interface, chosen by name (`--aggregator`).

A rule maps the round's base model and the contributions (weights, claimed sample count) to new
weights. Rules are deterministic for the same inputs in the same order (callers sort contributions
by author), accumulate in float64 and return float32, so every member that aggregates the same set
gets bit-identical weights: catch-up, splits and merges compare model hashes, so nothing that
differs from member to member (such as one node's reputation book) may enter a rule.

The default, `guarded-fedavg`, never trusts a claimed sample count beyond `SAMPLE_CAP` times the
round's median claim: a bound every member computes alike from the same contributions, and one a
minority cannot move. Plain `fedavg` takes claims as they come, for comparisons.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mycelium.errors import ConfigError
from mycelium.learn import Weights

Contribution = tuple[Weights, int]
SAMPLE_CAP = 2.0
DEFAULT_AGGREGATOR = "guarded-fedavg"


def sample_bound(claims: Sequence[int]) -> float:
    """SAMPLE_CAP × the median claim (negative claims count as none)."""
    return SAMPLE_CAP * float(np.median(np.maximum(np.array(claims, dtype=np.float64), 0.0)))


def capped_samples(claims: Sequence[int]) -> np.ndarray:
    """Each claim clipped to [0, sample_bound]; all equal when nobody claims any."""
    bound = sample_bound(claims)
    if bound <= 0:
        return np.ones(len(claims))
    return np.minimum(np.maximum(np.array(claims, dtype=np.float64), 0.0), bound)


def coordinate_median(rows: np.ndarray) -> np.ndarray:
    """`np.median(rows, axis=0)`, bit for bit, for finite values (the codec admits no others). One
    row a contribution: sorting the few values of each coordinate is 4-12× faster than numpy's
    partition of a (few × many) matrix along its short axis."""
    ordered = np.sort(rows, axis=0)
    middle = len(ordered) // 2
    centre = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return centre + 0.0  # as numpy's mean does, -0.0 becomes 0.0


def _stack(contributions: Sequence[Contribution], name: str) -> np.ndarray:
    return np.stack([weights[name].astype(np.float64) for weights, _ in contributions])


def _per_tensor(contributions: Sequence[Contribution], reduce: Callable[[np.ndarray], np.ndarray]) -> Weights:
    names = list(contributions[0][0])
    return OrderedDict((name, reduce(_stack(contributions, name)).astype(np.float32)) for name in names)


def _weighted_mean(contributions: Sequence[Contribution], share: np.ndarray) -> Weights:
    return _per_tensor(contributions, lambda stacked: np.tensordot(share / share.sum(), stacked, axes=1))


def _flatten(weights: Weights) -> np.ndarray:
    return np.concatenate([values.astype(np.float64).ravel() for values in weights.values()])


def _unflatten(vector: np.ndarray, like: Weights) -> Weights:
    """A flat float64 vector as float32 tensors of `like`'s names and shapes, in its order."""
    out: Weights = OrderedDict()
    offset = 0
    for name, values in like.items():
        out[name] = vector[offset : offset + values.size].reshape(values.shape).astype(np.float32)
        offset += values.size
    return out


def weight_matrix(contributions: Sequence[Contribution]) -> np.ndarray:
    """Each contribution's weights, flattened: one row each (float64); no base enters it."""
    return np.stack([_flatten(weights) for weights, _ in contributions])


def update_matrix(base: Weights, contributions: Sequence[Contribution]) -> np.ndarray:
    """Each contribution's change from `base`, flattened: one row each (float64)."""
    return weight_matrix(contributions) - _flatten(base)


def with_update(base: Weights, update: np.ndarray) -> Weights:
    """`base` moved by a flat update vector (in `base`'s tensor order), as float32."""
    return _unflatten(_flatten(base) + update, base)


@dataclass(frozen=True)
class FedAvg:
    """Plain FedAvg: the mean weighted by each claimed sample count, as claimed (McMahan et al.
    2017). It trusts every claim; kept to compare with other systems, never the default."""

    name = "fedavg"

    def __call__(self, base: Weights, contributions: Sequence[Contribution]) -> Weights:
        samples = np.array([max(count, 0) for _, count in contributions], dtype=np.float64)
        return _weighted_mean(contributions, samples if samples.sum() > 0 else np.ones(len(samples)))


@dataclass(frozen=True)
class Median:
    """Coordinate-wise median (Yin et al. 2018)."""

    name = "median"

    def __call__(self, base: Weights, contributions: Sequence[Contribution]) -> Weights:
        return _per_tensor(contributions, coordinate_median)


@dataclass(frozen=True)
class TrimmedMean:
    """Coordinate-wise mean after dropping the `fraction` largest and smallest values, and at
    least one of each once there are three contributions (a fraction of a small group is 0)."""

    fraction: float = 0.2
    name = "trimmed-mean"

    def trim(self, n: int) -> int:
        return max(int(n * self.fraction), 1 if n >= 3 else 0)

    def __call__(self, base: Weights, contributions: Sequence[Contribution]) -> Weights:
        trim = self.trim(len(contributions))

        def reduce(stacked: np.ndarray) -> np.ndarray:
            ordered = np.sort(stacked, axis=0)
            return ordered[trim : len(ordered) - trim].mean(axis=0)

        return _per_tensor(contributions, reduce)


@dataclass(frozen=True)
class Krum:
    """The contribution closest to its n - f - 2 nearest others (Blanchard et al. 2017).

    f, the number of Byzantine peers tolerated, is the largest with n >= 2f + 3; below 3
    contributions Krum cannot tell anyone apart and falls back to FedAvg.
    """

    name = "krum"

    def __call__(self, base: Weights, contributions: Sequence[Contribution]) -> Weights:
        n = len(contributions)
        if n < 3:
            return FedAvg()(base, contributions)
        byzantine = (n - 3) // 2
        flat = weight_matrix(contributions)
        norms = (flat**2).sum(axis=1)
        squared = np.maximum(norms[:, None] + norms[None, :] - 2 * flat @ flat.T, 0.0)
        neighbours = n - byzantine - 2
        scores = [np.sort(np.delete(squared[i], i))[:neighbours].sum() for i in range(n)]
        chosen = contributions[int(np.argmin(scores))][0]
        return OrderedDict((name, values.astype(np.float32)) for name, values in chosen.items())


@dataclass(frozen=True)
class GuardedFedAvg:
    """FedAvg of contributions clipped around their coordinate-wise median (centered clipping,
    Karimireddy et al. 2021, with the median as the centre), weighted by capped sample counts.

    A contribution farther from the centre than `radius` times the median distance is pulled in to
    that distance, so no contribution moves the average more than a typical one can, whatever its
    size or direction. Everything is computed on the contributed weights themselves, never on our
    own base model: members whose bases differ still agree on the result of the same set.
    """

    radius: float = 1.0
    name = "guarded-fedavg"

    def __call__(self, base: Weights, contributions: Sequence[Contribution]) -> Weights:
        flat = weight_matrix(contributions)
        centre = coordinate_median(flat)
        offsets = flat - centre
        distances = np.linalg.norm(offsets, axis=1)
        bound = self.radius * float(np.median(distances))
        scale = np.where(distances > bound, bound / np.maximum(distances, 1e-300), 1.0)
        share = capped_samples([count for _, count in contributions])
        mean = centre + np.tensordot(share / share.sum(), offsets * scale[:, None], axes=1)
        return _unflatten(mean, contributions[0][0])


def agreement(updates: np.ndarray) -> np.ndarray:
    """Each update's (one row each) cosine similarity to the coordinate-wise median update."""
    centre = coordinate_median(updates)
    lengths = np.linalg.norm(updates, axis=1) * np.linalg.norm(centre)
    return np.where(lengths > 0, updates @ centre / np.maximum(lengths, 1e-300), 0.0)


Rule = Callable[[Weights, Sequence[Contribution]], Weights]

AGGREGATORS: dict[str, Rule] = {
    rule.name: rule for rule in (GuardedFedAvg(), FedAvg(), Median(), TrimmedMean(), Krum())
}


def get_aggregator(name: str) -> Rule:
    if name not in AGGREGATORS:
        raise ConfigError(f"unknown aggregator {name!r}; choose one of {', '.join(AGGREGATORS)}")
    return AGGREGATORS[name]


def aggregate(rule: Rule, base: Weights, contributions: Sequence[Contribution]) -> Weights:
    if not contributions:
        raise ValueError("nothing to aggregate")
    return rule(base, contributions)
