"""Measuring each contributor's update on our own validation data, for policy/trust.py.

Blocking (it evaluates models): the round calls `measure` through a worker thread. `loss_of` is the
member's validation loss of a model. The harm of an update is how much that loss rises when the
update, as sent, is in the round's average (weighted by capped claims) rather than left out: one
evaluation per contributor, plus one of the whole average.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mycelium.learn import Weights
from mycelium.learn.aggregate import agreement, capped_samples, sample_bound, update_matrix, with_update
from mycelium.policy.peers import PeerId
from mycelium.policy.trust import Evidence, Reputation, TrustRules, deviations

log = logging.getLogger(__name__)

REPUTATION_FILE = "reputation.json"


@dataclass(frozen=True)
class Scored:
    """One contribution as trust measures it."""

    author: PeerId
    weights: Weights
    claimed: int
    base: Weights | None = None  # the model it was trained from, when that is not ours


def measure(
    loss_of: Callable[[Weights], float],
    base: Weights,
    contributions: Sequence[Scored],
    me: PeerId,
    rules: TrustRules,
) -> dict[PeerId, Evidence]:
    """Evidence on every contributor but us; nothing when fewer than three contributed (then an
    update has no group to be compared with). Each update is taken against the base it was
    trained from when we hold that model (a member one round behind trained from our previous
    model; against ours its update would look twice as large), else against ours."""
    if len(contributions) < 3:
        return {}
    updates = np.stack([update_matrix(c.base or base, [(c.weights, c.claimed)])[0] for c in contributions])
    norms = np.linalg.norm(updates, axis=1)
    cosine = agreement(updates)
    claims = [c.claimed for c in contributions]
    share = capped_samples(claims)
    bound = sample_bound(claims)

    def loss_without(index: int | None) -> float:
        weights = share.copy()
        if index is not None:
            weights[index] = 0.0
        return loss_of(with_update(base, np.tensordot(weights / weights.sum(), updates, axes=1)))

    disagreement = deviations([-float(c) for c in cosine], rules.min_agreement_spread)
    size = deviations([float(v) for v in np.log(np.maximum(norms, 1e-300))], rules.min_size_spread)
    with_all = loss_without(None)
    evidence = {}
    for index, contribution in enumerate(contributions):
        if contribution.author == me:
            continue
        without = loss_without(index)
        evidence[contribution.author] = Evidence(
            agreement=float(cosine[index]),
            agreement_z=disagreement[index],
            size_z=size[index],
            harm=(with_all - without) / max(without, rules.loss_floor),
            claimed=contribution.claimed,
            bound=bound,
        )
    return evidence


def load_reputation(data_dir: Path, rules: TrustRules) -> Reputation:
    try:
        data = json.loads((data_dir / REPUTATION_FILE).read_text())
    except FileNotFoundError:
        return Reputation(rules)
    except (OSError, ValueError) as error:
        log.warning("reputation file unreadable (%s); starting afresh", error)
        return Reputation(rules)
    return Reputation.from_json(data, rules)


def save_reputation(data_dir: Path, reputation: Reputation) -> None:
    path = data_dir / REPUTATION_FILE
    temporary = path.with_suffix(".tmp")
    try:
        temporary.write_text(json.dumps(reputation.to_json()))
        temporary.replace(path)
    except OSError as error:
        log.warning("could not save reputations: %s", error)
