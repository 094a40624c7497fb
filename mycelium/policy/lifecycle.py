"""What a learning node does next, between group sessions. Pure.

A node's life is a loop: enter a group (create one, join one, resume the one it was in before a
restart, found the half of a split, or rejoin), take part until the session ends, and decide from
how it ended where to go next. `first_plan` and `next_plan` are that decision; `node/peer.py`
carries it out.

- `--group new` creates, `--group ID` joins that group, `--group auto` (the default) looks for the
  best group for its data and creates one when none fits. A checkpoint of the same task resumes
  its group first (under `auto` and `new`, or when it names the `--group ID` given).
- Whatever the node learned travels with it: a node that must look for a group again carries its
  model (a group it creates starts from it; a group it joins replaces it with the group's own).
- A node dropped from its group (evicted), or whose part lost a merge, or that lost its group's
  gossip, rejoins the same group through a member of the version it holds: the group is still
  alive, and rejoining is how membership heals. A dissolved group is not looked for again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Ending(Enum):
    FINISHED = "finished"  # --rounds done
    MIGRATE = "migrate"  # another group serves our data better
    SPLIT = "split"  # our half of a split group forms a new group
    EVICTED = "evicted"  # the group's record no longer lists us
    MERGE = "merge"  # our part of a diverged group lost the merge
    REJOIN = "rejoin"  # we lost the group's gossip while it is alive
    DISSOLVED = "dissolved"  # nobody of the group is alive
    SHUTDOWN = "shutdown"


class Step(Enum):
    CREATE = "create"
    JOIN = "join"  # a group by id (or through the version we hold of it)
    AUTO = "auto"  # discover, evaluate, join the best, or create
    RESUME = "resume"  # the group of our checkpoint
    FOUND = "found"  # the new group of our half of a split (as its creator, or by joining it)


@dataclass(frozen=True)
class Plan:
    step: Step
    group_id: str = ""
    came_from: str = ""  # JOIN after a migration: the group we left
    gain: float = 0.0
    avoid: str = ""  # AUTO: a group not to enter again (it dissolved around us)
    patient: bool = False  # JOIN: keep asking for a while (the group is alive, or being founded)


def first_plan(group_option: str, checkpoint_group: str | None) -> Plan:
    """Where a node goes when it starts: `group_option` is --group; `checkpoint_group` what it resumes."""
    if checkpoint_group is not None and group_option in ("auto", "new", checkpoint_group):
        return Plan(Step.RESUME, group_id=checkpoint_group)
    if group_option == "new":
        return Plan(Step.CREATE)
    if group_option == "auto":
        return Plan(Step.AUTO)
    return Plan(Step.JOIN, group_id=group_option, patient=True)


def next_plan(
    ending: Ending, group_option: str, group_id: str, target: str = "", gain: float = 0.0
) -> Plan | None:
    """Where a node goes when its session in `group_id` ended with `ending`; None: it stops."""
    if ending in (Ending.FINISHED, Ending.SHUTDOWN):
        return None
    if ending is Ending.MIGRATE:
        return Plan(Step.JOIN, group_id=target, came_from=group_id, gain=gain)
    if ending is Ending.SPLIT:
        return Plan(Step.FOUND, group_id=target)
    if ending in (Ending.EVICTED, Ending.MERGE, Ending.REJOIN):
        return Plan(Step.JOIN, group_id=group_id, patient=True)
    # dissolved
    if group_option in ("auto", "new"):
        return Plan(Step.AUTO, avoid=group_id)
    return Plan(Step.JOIN, group_id=group_id, patient=True)


def after_failed_join(plan: Plan, group_option: str) -> Plan | None:
    """A JOIN that could not get in: look for another group (None: the node must stop with an error)."""
    if group_option in ("auto", "new"):
        return Plan(Step.AUTO, avoid=plan.group_id if not plan.came_from else "")
    return None
