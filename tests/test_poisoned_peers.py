"""Learning that survives a poisoned peer: real nodes, one of them started with `--attack`, the
production trust rules and aggregation (no test-tuned thresholds)."""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import pytest

from mycelium.errors import ConfigError
from mycelium.learn.data import node_data, parse_partition
from mycelium.node.attacks import ENV, INFLATED_SAMPLES, SIGN_FLIP_SCALE, build_attack, check_attack

CALM = ["--round-interval", "1", "--partition", "iid"]
SHAPES = {"w": (3, 2)}


def test_attacks_are_refused_unless_the_environment_says_this_is_a_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ConfigError, match="tests only"):
        check_attack("sign-flip")
    monkeypatch.setenv(ENV, "1")
    assert check_attack("sign-flip") == "sign-flip"
    with pytest.raises(ConfigError, match="unknown attack"):
        check_attack("everything")


def test_each_attack_lies_in_its_own_way_and_is_honest_otherwise() -> None:
    base = OrderedDict(w=np.zeros((3, 2), dtype=np.float32))
    trained = OrderedDict(w=np.ones((3, 2), dtype=np.float32))
    assert build_attack("", SHAPES, 0) is None
    flip = build_attack("sign-flip", SHAPES, 0)
    assert flip.update(base, trained)["w"].tolist() == (-SIGN_FLIP_SCALE * np.ones((3, 2))).tolist()
    assert flip.samples(50) == 50
    noise = build_attack("noise", SHAPES, 0).update(base, trained)["w"]
    assert noise.shape == (3, 2) and not np.allclose(noise, 1.0)
    assert build_attack("inflate-samples", SHAPES, 0).samples(50) == INFLATED_SAMPLES
    data = node_data("digits", parse_partition("iid"), 0, 4, 0)
    flipped = build_attack("label-flip", SHAPES, 0).data(data)
    assert (flipped.train.y == 9 - data.train.y).all() and (flipped.validation.y == data.validation.y).all()


def test_a_sign_flipping_member_is_distrusted_by_every_honest_member_and_removed_by_the_leader(spawn) -> None:  # type: ignore[no-untyped-def]
    boot = spawn("boot", "--group", "none")
    common = ["--bootstrap", boot.addr, *CALM, "--rounds", "10", "--min-members", "5"]
    honest = [spawn("h0", "--group", "new", "--shard", "0/5", *common)]
    group = honest[0].wait_for("joined")["group"]
    honest += [spawn(f"h{i}", "--group", group, "--shard", f"{i}/5", *common) for i in (1, 2, 3)]
    os.environ[ENV] = "1"
    try:
        attacker = spawn("bad", "--group", group, "--shard", "4/5", "--attack", "sign-flip", *common)
    finally:
        del os.environ[ENV]
    for node in honest:
        assert node.process.wait(300) == 0, node.stderr()[-2000:]
    # told to join this group and no other (--group ID), it is refused once removed, and says so
    assert attacker.process.wait(60) == 1
    assert "removed from this group for harmful updates" in attacker.stderr()
    bad = attacker.peer_id
    honest_ids = {node.peer_id for node in honest}
    removals = [e for e in honest[0].events() if e["event"] == "removed_member"]
    assert [e["peer"] for e in removals] == [bad] and "below the floor" in removals[0]["reason"]
    removed_in = removals[0]["round"]
    assert removed_in <= 5, removals
    for node in honest:
        distrusted = [e for e in node.events() if e["event"] == "distrusted"]
        assert {e["peer"] for e in distrusted} <= {bad}, distrusted  # never an honest member
        # out of this member's average: it distrusted the attacker, or the leader removed it first
        assert (distrusted and distrusted[0]["round"] <= 4) or removed_in <= 4, (distrusted, removed_in)
        assert not any(e["event"] == "removed_member" and e["peer"] in honest_ids for e in node.events())
        assert node.rounds()[-1]["accuracy"] >= 0.88, node.rounds()[-1]
    assert any(e["event"] == "distrusted" for e in honest[0].events())  # the leader's own book
    # once it is out, the four honest members are the group: by round 7 (the version without it
    # reaches every member on the group topic, or with the next heartbeats' recheck) all list four
    for node in honest:
        last = next(e for e in node.rounds() if e["round"] == 7)
        assert (last["listed"], last["members"]) == (4, 4), (removed_in, last["listed"], last["members"])
    hashes = {e["model_hash"] for node in honest for e in node.rounds() if e["round"] == 7}
    assert len(hashes) == 1, hashes
