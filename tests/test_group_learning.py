"""Peers of one group train one model together, with real node processes on loopback."""

from __future__ import annotations

import signal
import time

from conftest import NodeProcess


def start_group(spawn, count: int, *extra: str) -> tuple[NodeProcess, list[NodeProcess]]:  # type: ignore[no-untyped-def]
    """A DHT-only bootstrap peer and `count` learners that find one another (--group auto)."""
    boot = spawn("boot", "--group", "none")
    common = ["--bootstrap", boot.addr, "--partition", "dirichlet:0.5", "--min-members", str(count), *extra]
    first = spawn("learner0", "--shard", f"0/{count}", *common)
    group = first.wait_for("joined")["group"]
    rest = [spawn(f"learner{i}", "--shard", f"{i}/{count}", *common) for i in range(1, count)]
    for node in rest:
        assert node.wait_for("joined", timeout=90)["group"] == group
    return boot, [first, *rest]


def test_four_peers_reach_0_90_within_10_rounds_with_identical_models(spawn) -> None:
    _, learners = start_group(spawn, 4, "--rounds", "10")
    for node in learners:
        assert node.process.wait(180) == 0, node.stderr()[-2000:]
    by_round: dict[int, list[dict]] = {}
    for node in learners:
        for event in node.rounds():
            by_round.setdefault(event["round"], []).append(event)
    assert sorted(by_round) == list(range(10))
    for number, events in by_round.items():
        assert len(events) == 4
        if all(e["contributors"] == 4 for e in events):
            assert len({e["model_hash"] for e in events}) == 1, f"round {number} diverged"
    full_rounds = [n for n, events in by_round.items() if all(e["contributors"] == 4 for e in events)]
    assert len(full_rounds) >= 8, "rounds should close with every member in"
    final = [e["accuracy"] for e in by_round[9]]
    assert sum(final) / 4 >= 0.90, final
    for event in by_round[9]:
        phases = event["phase_s"]
        assert list(phases) == ["train", "announce", "collect", "judge", "aggregate", "evaluate"], phases
        assert 0 <= sum(phases.values()) <= event["wall_s"] + 0.01, event


def test_a_member_killed_mid_round_does_not_stall_the_others_beyond_the_deadline(spawn) -> None:
    # member expiry far above the round floor: only the deadline can explain a prompt close
    _, learners = start_group(spawn, 4, "--round-floor", "3", "--member-expiry", "40", "--local-epochs", "20")
    for node in learners:
        node.wait_for(lambda e: e["event"] == "round" and e["round"] >= 2, timeout=120)
    victim, survivors = learners[-1], learners[:-1]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(5)
    killed_at = time.time()
    for node in survivors:
        deadline = time.time() + 60
        while len(after := [e for e in node.rounds() if e["time"] > killed_at]) < 3:
            assert time.time() < deadline, f"{node.name} stalled after the kill: {after}"
            time.sleep(0.2)
        # the round in flight may still have had the victim's update; the next ones cannot
        missing = [e for e in after if e["contributors"] == 3]
        assert missing and missing[0]["closed"] == "deadline", after
        # training (20 epochs) + the 3 s floor + slack; the 40 s member expiry never came into play
        assert all(e["wall_s"] < 15 for e in after), after
        assert after[0]["time"] - killed_at < 15


def test_a_member_whose_group_finished_its_run_does_not_train_on_alone(spawn) -> None:
    boot = spawn("boot", "--group", "none")
    common = ["--bootstrap", boot.addr, "--partition", "iid", "--min-members", "2"]
    short = spawn("short", "--shard", "0/2", "--rounds", "4", *common)
    group = short.wait_for("joined")["group"]
    long = spawn("long", "--shard", "1/2", "--rounds", "30", *common)
    assert long.wait_for("joined", timeout=90)["group"] == group
    assert short.process.wait(120) == 0, short.stderr()[-2000:]
    assert long.process.wait(60) == 0, long.stderr()[-2000:]
    rounds = long.rounds()
    assert len(rounds) < 30 and all(r["group"] == group for r in rounds), rounds[-3:]
    assert long.wait_for("left")["reason"] == "finished"
