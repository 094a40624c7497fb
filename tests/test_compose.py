"""docker-compose.yml describes a real ten-node mesh of the real CLI (parsed here; built and run
for real by tests/test_compose_smoke.py, marker `compose`)."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from mycelium.net.identity import load_identity, peer_id_of
from mycelium.ui.cli import node_parser
from mycelium.ui.options import build_node_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
# The nodes; services behind a profile (Prometheus: `--profile metrics`) are extras.
SERVICES = {name: s for name, s in COMPOSE["services"].items() if not s.get("profiles")}


IMAGE_ENV = dict(re.findall(r"(MYCELIUM_\w+)=(\S+)", (ROOT / "Dockerfile").read_text()))


def environment(service: dict) -> dict[str, str]:
    """What the container sees: the image's ENV, overridden by the service's environment."""
    return {**IMAGE_ENV, **{k: str(v) for k, v in service.get("environment", {}).items()}}


def parsed(service: dict, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The service's command line as the container's entry point parses it, environment included."""
    for key in [k for k in os.environ if k.startswith("MYCELIUM_")]:
        monkeypatch.delenv(key)
    for key, value in environment(service).items():
        monkeypatch.setenv(key, value)
    return build_node_config(node_parser().parse_args(service.get("command", [])))


def test_ten_services_one_bootstrap_and_nine_peers() -> None:
    assert len(SERVICES) == 10 and len(COMPOSE["services"]) == 11
    assert "bootstrap" in SERVICES
    assert sum("build" in s for s in SERVICES.values()) == 1, "one service builds, the others reuse its image"
    assert len({s["image"] for s in SERVICES.values()}) == 1


def test_every_peer_bootstraps_from_a_service_that_exists_with_its_real_peer_id(monkeypatch) -> None:
    bootstrap_id = str(peer_id_of(load_identity(ROOT / "deploy" / "bootstrap.key")))
    for name, service in SERVICES.items():
        config = parsed(service, monkeypatch)
        if name == "bootstrap":
            assert config.net.bootstrap == ()
            continue
        (address,) = map(str, config.net.bootstrap)
        target = re.fullmatch(r"/dns4/([\w-]+)/tcp/(\d+)/p2p/(\w+)", address)
        assert target, address
        assert target.group(1) in SERVICES and target.group(1) != name
        assert target.group(3) == bootstrap_id, "the address names the bootstrap key's peer id"
        assert "bootstrap" in service["depends_on"]


def test_each_node_holds_a_distinct_shard_of_ten(monkeypatch) -> None:
    shards = [(c.learn.shard, c.learn.shards) for c in (parsed(s, monkeypatch) for s in SERVICES.values())]
    assert sorted(shards) == [(i, 10) for i in range(10)]


def test_each_node_keeps_its_identity_and_checkpoints_on_its_own_volume(monkeypatch) -> None:
    volumes = [next(v.split(":")[0] for v in s["volumes"] if v.endswith(":/data")) for s in SERVICES.values()]
    assert len(set(volumes)) == 10 and set(volumes) <= set(COMPOSE["volumes"])
    assert {str(parsed(s, monkeypatch).data_dir) for s in SERVICES.values()} == {"/data"}
    assert all(s.get("init") is True for s in SERVICES.values()), "SIGTERM must reach the node"
    assert all(s["stop_grace_period"] == "30s" for s in SERVICES.values()), "time to exit before SIGKILL"


def test_prometheus_is_optional_and_scrapes_every_node(monkeypatch) -> None:
    prometheus = COMPOSE["services"]["prometheus"]
    assert prometheus["profiles"] == ["metrics"], "not started by a plain `up`"
    assert "build" not in prometheus and prometheus["image"].startswith("prom/prometheus:v")
    config_file = next(v for v in prometheus["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro"))
    config = yaml.safe_load((ROOT / config_file.split(":")[0]).read_text())
    (job,) = config["scrape_configs"]
    (targets,) = [entry["targets"] for entry in job["static_configs"]]
    ports = {name: parsed(service, monkeypatch).metrics for name, service in SERVICES.items()}
    assert set(ports.values()) == {("0.0.0.0", 9100)}, "every node serves metrics on the network"
    assert sorted(targets) == sorted(f"{name}:9100" for name in SERVICES)


def test_the_image_runs_the_real_cli() -> None:
    """The entry point is the package's script; what is in the image (CPU torch, non-root user) is
    checked in the built image by the compose smoke run."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M).group(1))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["mycelium-node"] and scripts["mycelium-node"] == "mycelium.ui.cli:node_main"
