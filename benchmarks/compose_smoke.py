#!/usr/bin/env python3
"""Compose smoke run: docker-compose.yml's ten-node mesh, for real, with podman.

    python3 benchmarks/compose_smoke.py [--no-cache] [--torch-index URL] [--json FILE]

1. Sets podman up as README "With podman" and deploy/podman/ say, where something is missing:
   apt-get install podman runc catatonit debootstrap (root), podman-compose 1.6.0 in a venv
   (~/.venv-compose, or $MYCELIUM_COMPOSE_VENV), deploy/podman/containers.conf on cgroups-v1 hosts
   without /etc/containers/containers.conf, the stand-in python:3.11-slim of
   deploy/podman/make-base-image.sh, and the torch CPU wheel in wheels/ (pip download).
2. Builds the image (`podman-compose build`) and checks what is in it: torch 2.13.0+cpu with no
   CUDA and no nvidia-* package, the entry point mycelium-node, a non-root user.
3. Starts the mesh (`up -d`) under a project name of its own (mycsmoke<hex>) and reads every
   node's events from `podman logs` until all ten nodes are in groups of two or more and their
   latest round has accuracy >= --accuracy (default 0.90, digits). Scrapes every node's
   /metrics from inside the compose network, as the `metrics` profile's Prometheus would.
4. Stops the nodes (each must exit 0 after logging `left`), runs `down -v`, and checks that no
   container, network or volume of its project is left. Cleans up on failure too.

Only stdlib; every command and wait is bounded, the whole run by --timeout (default 900 s).
Prints a report and exits 0 when every check passed, 1 otherwise (tests/test_compose_smoke.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "python:3.11-slim"  # make-base-image.sh tags it fully qualified
IMAGE = "mycelium:latest"
TORCH = "torch==2.13.0+cpu"
PODMAN_COMPOSE = "podman-compose==1.6.0"
CLEANUP_RESERVE_S = 90  # kept out of the steps' share of --timeout, for stop/down/cleanup


class SmokeError(Exception):
    """A check failed or a step ran out of time; the message says which."""


@dataclass
class Clock:
    """The run's hard cap: every step's timeout is bounded by what is left of it."""

    cap_s: float
    start: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self, reserve: float = CLEANUP_RESERVE_S) -> float:
        return self.cap_s - reserve - self.elapsed()

    def bound(self, timeout: float, reserve: float = CLEANUP_RESERVE_S) -> float:
        left = self.left(reserve)
        if left <= 1:
            raise SmokeError(f"out of time: the run's cap of {self.cap_s:.0f} s is spent")
        return min(timeout, left)


CLOCK = Clock(900.0)


def log(message: str) -> None:
    print(f"[{CLOCK.elapsed():6.1f}s] {message}", flush=True)


def run(
    cmd: list[str],
    timeout: float,
    *,
    check: bool = True,
    quiet: bool = False,
    reserve: float = CLEANUP_RESERVE_S,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run cmd in its own process group, killed as a group when it overruns (podman-compose starts
    podman processes of its own). Output is captured; shown when the command fails."""
    timeout = CLOCK.bound(timeout, reserve)
    if not quiet:
        log("$ " + " ".join(arg if "\n" not in arg else "'<script>'" for arg in cmd))
    process = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        env=env,
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        raise SmokeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}\n{tail(out)}") from None
    result = subprocess.CompletedProcess(cmd, process.returncode, out, "")
    if check and process.returncode != 0:
        raise SmokeError(f"exit {process.returncode}: {' '.join(cmd)}\n{tail(out)}")
    return result


def tail(text: str, lines: int = 30) -> str:
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------- setup


def compose_venv() -> Path:
    return Path(os.environ.get("MYCELIUM_COMPOSE_VENV", Path.home() / ".venv-compose"))


def setup(torch_index: str | None) -> dict[str, Any]:
    """Install and configure what is missing, as README 'With podman' does; returns what it did."""
    did: dict[str, Any] = {}
    tools = {"podman": "podman", "runc": "runc", "catatonit": "catatonit", "debootstrap": "debootstrap"}
    catatonit = shutil.which("catatonit") or Path("/usr/libexec/podman/catatonit").exists()
    missing = [
        pkg for pkg, exe in tools.items() if not (catatonit if exe == "catatonit" else shutil.which(exe))
    ]
    if missing:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise SmokeError(f"missing {', '.join(missing)}: install them (README: With podman)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "install", "-y", "podman", "runc", "catatonit", "debootstrap"], 600, env=env)
        did["apt-get install"] = missing

    venv = compose_venv()
    if shutil.which("podman-compose") is None and not (venv / "bin" / "podman-compose").exists():
        run([sys.executable, "-m", "venv", str(venv)], 120)
        run([str(venv / "bin" / "pip"), "install", "-q", PODMAN_COMPOSE], 300)
        did["podman-compose venv"] = str(venv)

    conf = Path("/etc/containers/containers.conf")
    cgroups_v1 = not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    if cgroups_v1 and not conf.exists() and os.geteuid() == 0:
        conf.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "deploy" / "podman" / "containers.conf", conf)
        did["containers.conf"] = str(conf)

    if run(["podman", "image", "exists", BASE_IMAGE], 60, check=False, quiet=True).returncode != 0:
        started = time.monotonic()
        run(["sh", "deploy/podman/make-base-image.sh"], 400)
        did["base image"] = f"made by deploy/podman/make-base-image.sh in {time.monotonic() - started:.0f} s"
    else:
        did["base image"] = "present"

    wheels = sorted((ROOT / "wheels").glob("torch-2.13.0+cpu-*.whl"))
    if torch_index:
        did["torch"] = "from --torch-index (build arg TORCH_INDEX)"
    elif wheels:
        did["torch"] = f"wheels/{wheels[0].name} (present)"
    else:
        # "+cpu" in the requirement: only a CPU wheel can match, pip never fetches the CUDA build.
        pip = (
            [str(venv / "bin" / "python"), "-m", "pip"]
            if (venv / "bin" / "python").exists()
            else [sys.executable, "-m", "pip"]
        )
        result = run([*pip, "download", "--no-deps", "-d", "wheels", TORCH], 600, check=False)
        wheels = sorted((ROOT / "wheels").glob("torch-2.13.0+cpu-*.whl"))
        if result.returncode != 0 or not wheels:
            raise SmokeError(
                f"pip found no {TORCH} wheel: pass --torch-index <PyTorch's CPU wheel index> "
                f"or put the wheel in wheels/\n{tail(result.stdout)}"
            )
        did["torch"] = f"wheels/{wheels[0].name} (pip download)"
    return did


def compose_command() -> list[str]:
    found = shutil.which("podman-compose")
    return [found or str(compose_venv() / "bin" / "podman-compose")]


# ------------------------------------------------------------------------------------ the image

IMAGE_CHECK = r"""
import json, os, sys, importlib.metadata as md
import torch
names = [d.metadata["Name"] for d in md.distributions()]
nvidia = sorted(n for n in names if n.lower().startswith("nvidia"))
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "nvidia": nvidia,
                  "uid": os.getuid(), "mycelium": md.version("mycelium")}))
"""


def check_image(project: str) -> dict[str, Any]:
    config = json.loads(run(["podman", "image", "inspect", IMAGE, "--format", "{{json .Config}}"], 60).stdout)
    size = run(["podman", "image", "inspect", IMAGE, "--format", "{{.Size}}"], 60).stdout.strip()
    out = run(
        [
            "podman",
            "run",
            "--rm",
            "--name",
            f"{project}_imagecheck",
            "--entrypoint",
            "python",
            IMAGE,
            "-c",
            IMAGE_CHECK,
        ],
        120,
    ).stdout
    inside = json.loads(out.strip().splitlines()[-1])
    facts = {
        "entrypoint": config.get("Entrypoint"),
        "user": config.get("User"),
        "size_mb": int(size) / 1e6,
        **inside,
    }
    problems = []
    if facts["entrypoint"] != ["mycelium-node"]:
        problems.append(f"entry point {facts['entrypoint']}, not ['mycelium-node']")
    if facts["user"] in ("", "root", "0") or facts["uid"] == 0:
        problems.append(f"runs as root (User {facts['user']!r}, uid {facts['uid']})")
    if facts["torch"] != "2.13.0+cpu" or facts["cuda"] is not None or facts["nvidia"]:
        problems.append(f"torch {facts['torch']} cuda {facts['cuda']} nvidia packages {facts['nvidia']}")
    if problems:
        raise SmokeError("image: " + "; ".join(problems))
    return facts


# ----------------------------------------------------------------------------------- the mesh


def project_containers(project: str) -> dict[str, tuple[str, str]]:
    """service name -> (container name, state), for the project's containers."""
    out = run(
        ["podman", "ps", "-a", "--filter", f"label=io.podman.compose.project={project}", "--format", "json"],
        60,
        quiet=True,
        reserve=0,
    ).stdout
    found = {}
    for entry in json.loads(out or "[]"):
        service = (entry.get("Labels") or {}).get("com.docker.compose.service")
        names = entry.get("Names") or []
        if service and names:
            found[service] = (names[0], str(entry.get("State", "")))
    return found


def events_of(container: str) -> list[dict[str, Any]]:
    out = run(["podman", "logs", container], 60, check=False, quiet=True, reserve=0).stdout
    events = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return events


def last(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((e for e in reversed(events) if e.get("event") == kind), None)


@dataclass
class Mesh:
    services: list[str]
    up_at: float  # epoch seconds, when `up -d` was started
    first_round: float | None = None
    all_rounds: float | None = None
    reached: float | None = None
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def wait_for_mesh(project: str, mesh: Mesh, accuracy: float, wait_s: float) -> None:
    """Until every node's latest round is in a group of >= 2 with accuracy >= the threshold."""
    deadline = time.monotonic() + CLOCK.bound(wait_s)
    status = ""
    while True:
        containers = project_containers(project)
        if set(mesh.services) - set(containers):
            raise SmokeError(f"containers missing: {sorted(set(mesh.services) - set(containers))}")
        for service in mesh.services:
            mesh.events[service] = events_of(containers[service][0])
        dead = [s for s in mesh.services if containers[s][1] != "running" or last(mesh.events[s], "finished")]
        if dead:
            logs = run(
                ["podman", "logs", "--tail", "15", containers[dead[0]][0]], 30, check=False, quiet=True
            )
            raise SmokeError(f"nodes stopped early: {dead}\n{tail(logs.stdout)}")
        rounds = {s: last(mesh.events[s], "round") for s in mesh.services}
        times = [e["time"] for s in mesh.services for e in mesh.events[s] if e.get("event") == "round"]
        if times and mesh.first_round is None:
            mesh.first_round = min(times) - mesh.up_at
        if all(rounds.values()) and mesh.all_rounds is None:
            mesh.all_rounds = (
                max(
                    next(e["time"] for e in mesh.events[s] if e.get("event") == "round")
                    for s in mesh.services
                )
                - mesh.up_at
            )
        good = [
            s
            for s, r in rounds.items()
            if r and r.get("members", 0) >= 2 and r.get("accuracy", 0) >= accuracy
        ]
        now = (
            f"{sum(bool(last(mesh.events[s], 'listening')) for s in mesh.services)} listening, "
            f"{sum(bool(last(mesh.events[s], 'joined')) for s in mesh.services)} joined, "
            f"{sum(bool(r) for r in rounds.values())} in rounds, {len(good)} at >= {accuracy:.2f} "
            f"in a group of >= 2"
        )
        if now != status:
            log(now)
            status = now
        if len(good) == len(mesh.services):
            mesh.reached = max(rounds[s]["time"] for s in mesh.services) - mesh.up_at
            return
        if time.monotonic() > deadline:
            detail = {
                s: (r and {k: r.get(k) for k in ("group", "round", "members", "accuracy")})
                for s, r in rounds.items()
            }
            raise SmokeError(f"after {wait_s:.0f} s: {now}\n    latest rounds: {json.dumps(detail)}")
        time.sleep(5)


def memory(project: str) -> dict[str, float]:
    """MB per container, from `podman stats --no-stream` (service name -> MB)."""
    containers = {service: name for service, (name, _) in project_containers(project).items()}
    out = run(["podman", "stats", "--no-stream", "--format", "json", *containers.values()], 90).stdout
    by_name = {name: service for service, name in containers.items()}
    usage = {}
    for entry in json.loads(out or "[]"):
        text = entry.get("mem_usage") or entry.get("MemUsage") or ""
        usage[by_name.get(entry.get("name") or entry.get("Name"), entry.get("name"))] = to_mb(
            text.split("/")[0]
        )
    return usage


def to_mb(text: str) -> float:
    text = text.strip()
    for unit, factor in (
        ("kB", 1e-3),
        ("KB", 1e-3),
        ("MB", 1.0),
        ("GB", 1e3),
        ("KiB", 1.024e-3),
        ("MiB", 1.048576),
        ("GiB", 1073.741824),
        ("B", 1e-6),
    ):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float("nan")


SCRAPE = r"""
import json, sys, urllib.request
answers = {}
for target in sys.argv[1:]:
    try:
        body = urllib.request.urlopen(f"http://{target}/metrics", timeout=5).read().decode()
        answers[target] = sum(1 for line in body.splitlines() if line.startswith("mycelium_"))
    except Exception as error:
        answers[target] = repr(error)
print(json.dumps(answers))
"""


def scrape(project: str, targets: list[str]) -> dict[str, Any]:
    """What Prometheus would see: each node's /metrics fetched by service name on the network."""
    bootstrap = project_containers(project)["bootstrap"][0]
    out = run(["podman", "exec", bootstrap, "python", "-c", SCRAPE, *targets], 90).stdout
    return json.loads(out.strip().splitlines()[-1])


def metrics_targets() -> list[str]:
    """The targets of deploy/prometheus.yml (its `- host:port` lines; no YAML parser needed)."""
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    return re.findall(r"^\s*-\s*([\w.-]+:\d+)\s*$", text, re.M)


def stop_and_check(project: str, compose: list[str], services: list[str]) -> dict[str, Any]:
    """`stop` first, so that exit codes and the last events can be read before `down` removes them.
    Each node must log `left` (reason shutdown) and exit 0 within the compose file's
    stop_grace_period, i.e. before podman's SIGKILL."""
    sent = time.time()
    started = time.monotonic()
    run([*compose, "-p", project, "stop"], 150)
    stop_s = time.monotonic() - started
    containers = project_containers(project)
    nodes = {}
    for service in services:
        name = containers[service][0]
        state = json.loads(
            run(["podman", "inspect", "--format", "{{json .State}}", name], 30, quiet=True).stdout
        )
        left = last(events_of(name), "left") or {}
        nodes[service] = {
            "exit": state.get("ExitCode"),
            "left": left.get("reason"),
            "left_s": left["time"] - sent if "time" in left else None,
            "exit_s": epoch(state.get("FinishedAt", "")) - sent,
        }
    bad = {s: n for s, n in nodes.items() if n["exit"] != 0 or n["left"] != "shutdown"}
    if bad:
        raise SmokeError(f"nodes that did not leave and exit 0 on SIGTERM: {json.dumps(bad)}")
    return {
        "stop_s": stop_s,
        "left_after_sigterm_s": max(n["left_s"] for n in nodes.values()),
        "exit_after_sigterm_s": max(n["exit_s"] for n in nodes.values()),
    }


def epoch(rfc3339: str) -> float:
    """podman's 2026-12-02T13:57:18.575807824Z (nanoseconds) as epoch seconds; NaN if unreadable."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", rfc3339)
    if not match:
        return float("nan")
    whole = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return whole + float(match[2] or 0)


def leftovers(project: str) -> dict[str, list[str]]:
    label = f"label=io.podman.compose.project={project}"
    found = {}
    for kind, cmd in (
        ("containers", ["podman", "ps", "-a", "--format", "{{.Names}}"]),
        ("networks", ["podman", "network", "ls", "--format", "{{.Name}}"]),
        ("volumes", ["podman", "volume", "ls", "--format", "{{.Name}}"]),
    ):
        labelled = run([*cmd, "--filter", label], 60, quiet=True, reserve=0).stdout.split()
        named = [n for n in run(cmd, 60, quiet=True, reserve=0).stdout.split() if n.startswith(project + "_")]
        found[kind] = sorted(set(labelled) | set(named))
    return {kind: names for kind, names in found.items() if names}


def force_cleanup(project: str, compose: list[str]) -> None:
    """After a failure: `down -v`, then remove by label and name whatever is still there."""
    run([*compose, "-p", project, "down", "-v"], 120, check=False, reserve=0)
    left = leftovers(project)
    for name in left.get("containers", []):
        run(["podman", "rm", "-f", "-t", "2", name], 60, check=False, reserve=0)
    for name in left.get("volumes", []):
        run(["podman", "volume", "rm", "-f", name], 60, check=False, reserve=0)
    for name in left.get("networks", []):
        run(["podman", "network", "rm", "-f", name], 60, check=False, reserve=0)


# ---------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--timeout", type=float, default=900, help="hard cap on the whole run (default 900 s)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=420,
        help="bound on the wait for rounds and accuracy after `up` (default 420 s)",
    )
    parser.add_argument(
        "--accuracy", type=float, default=0.90, help="every node's latest round (default 0.90)"
    )
    parser.add_argument("--no-cache", action="store_true", help="build every layer afresh (a cold build)")
    parser.add_argument("--torch-index", metavar="URL", help="build arg TORCH_INDEX instead of wheels/")
    parser.add_argument("--project", default=f"mycsmoke{secrets.token_hex(3)}", help="compose project name")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = Clock(args.timeout)

    report: dict[str, Any] = {"project": args.project, "passed": False}
    compose: list[str] = []
    made_anything = False
    try:
        started = time.monotonic()
        report["setup"] = setup(args.torch_index)
        report["setup_s"] = time.monotonic() - started
        compose = compose_command()
        versions = run(["podman", "--version"], 30, quiet=True).stdout.split()[-1]
        report["podman"] = versions
        report["podman_compose"] = run([*compose, "--version"], 30, quiet=True).stdout.split()[2]
        # The profile's service must parse too, though its image cannot be pulled everywhere.
        profiled = run([*compose, "-p", args.project, "--profile", "metrics", "config"], 60).stdout
        if "prom/prometheus" not in profiled or "prometheus.yml" not in profiled:
            raise SmokeError("`--profile metrics config` shows no Prometheus service")

        build = [*compose, "-p", args.project, "build"]
        if args.no_cache:
            build.append("--no-cache")
        if args.torch_index:
            build += ["--build-arg", f"TORCH_INDEX={args.torch_index}"]
        started = time.monotonic()
        run(build, 600)
        report["build_s"] = time.monotonic() - started
        report["image"] = check_image(args.project)
        log(f"image: {json.dumps(report['image'])}")

        services = [
            s
            for s in run(
                [*compose, "-p", args.project, "config", "--services"], 60, quiet=True
            ).stdout.split()
        ]
        if len(services) != 10:
            raise SmokeError(f"expected ten node services without a profile, got {services}")
        up_at = time.time()
        started = time.monotonic()
        made_anything = True
        run([*compose, "-p", args.project, "up", "-d"], 180)
        report["up_s"] = time.monotonic() - started
        mesh = Mesh(services, up_at)
        try:
            wait_for_mesh(args.project, mesh, args.accuracy, args.wait)
        finally:
            report["first_round_s"] = mesh.first_round
            report["all_in_rounds_s"] = mesh.all_rounds
        report["accuracy_reached_s"] = mesh.reached
        rounds = {s: last(mesh.events[s], "round") or {} for s in services}
        report["nodes"] = {
            s: {k: r.get(k) for k in ("group", "round", "members", "accuracy", "closed")}
            for s, r in rounds.items()
        }
        groups: dict[str, int] = {}
        for r in rounds.values():
            groups[r["group"]] = groups.get(r["group"], 0) + 1
        report["groups"] = sorted(groups.values(), reverse=True)
        listening = [e["time"] for s in services for e in mesh.events[s] if e.get("event") == "listening"]
        report["all_listening_s"] = max(listening) - up_at if len(listening) >= len(services) else None
        report["memory_mb"] = memory(args.project)
        if any("MYCELIUM_METRICS" in line for line in (ROOT / "docker-compose.yml").read_text().splitlines()):
            answers = scrape(args.project, metrics_targets())
            report["metrics"] = answers
            failed = {t: a for t, a in answers.items() if not isinstance(a, int) or a == 0}
            if len(answers) != 10 or failed:
                raise SmokeError(f"metrics endpoints that did not answer with mycelium_* series: {failed}")

        report.update(stop_and_check(args.project, compose, services))
        started = time.monotonic()
        run([*compose, "-p", args.project, "down", "-v"], 120, reserve=10)
        report["down_s"] = time.monotonic() - started
        left = leftovers(args.project)
        if left:
            raise SmokeError(f"left behind by `down -v`: {left}")
        report["leftovers"] = "none"
        report["passed"] = True
    except SmokeError as error:
        report["error"] = str(error)
        log(f"FAILED: {error}")
    except KeyboardInterrupt:
        report["error"] = "interrupted"
    finally:
        if made_anything and not report["passed"]:
            log("cleaning up")
            force_cleanup(args.project, compose)
            left = leftovers(args.project)
            report["leftovers"] = left or "none (after cleanup)"
        report["total_s"] = CLOCK.elapsed()
        print_report(report)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if report["passed"] else 1


def print_report(r: dict[str, Any]) -> None:
    def s(key: str) -> str:
        value = r.get(key)
        return f"{value:.1f} s" if isinstance(value, int | float) else "-"

    lines = [
        f"== compose smoke run: project {r['project']}, podman {r.get('podman', '?')}, "
        f"podman-compose {r.get('podman_compose', '?')}"
    ]
    setup = r.get("setup", {})
    lines.append(f"setup       {s('setup_s')}  " + "; ".join(f"{k}: {v}" for k, v in setup.items()))
    image = r.get("image")
    if image:
        lines.append(
            f"build       {s('build_s')}  image {image['size_mb']:.0f} MB, torch {image['torch']} "
            f"(cuda {image['cuda']}, nvidia packages {len(image['nvidia'])}), user {image['user']} "
            f"uid {image['uid']}, entrypoint {' '.join(image['entrypoint'])}"
        )
    else:
        lines.append(f"build       {s('build_s')}")
    lines.append(f"up -d       {s('up_s')}  all ten listening {s('all_listening_s')} after up")
    lines.append(
        f"rounds      first round {s('first_round_s')} after up, all ten in rounds {s('all_in_rounds_s')}, "
        f"all ten >= accuracy in groups of >= 2: {s('accuracy_reached_s')}"
    )
    if "groups" in r:
        lines.append(f"groups      {len(r['groups'])} (sizes {', '.join(map(str, r['groups']))})")
    nodes = r.get("nodes", {})
    if nodes:
        lines.append(
            "accuracy    " + ", ".join(f"{n} {v['accuracy']:.3f} (r{v['round']})" for n, v in nodes.items())
        )
    mem = r.get("memory_mb", {})
    if mem:
        values = list(mem.values())
        lines.append(
            f"memory      {min(values):.0f}-{max(values):.0f} MB per container, {sum(values):.0f} MB in all: "
            + ", ".join(f"{n} {v:.0f}" for n, v in mem.items())
        )
    if "metrics" in r:
        answered = sum(isinstance(v, int) and v > 0 for v in r["metrics"].values())
        counts = [v for v in r["metrics"].values() if isinstance(v, int)]
        lines.append(
            f"metrics     {answered}/{len(r['metrics'])} endpoints answered "
            f"({min(counts, default=0)}-{max(counts, default=0)} mycelium_* lines each)"
        )
    lines.append(
        f"stop        {s('stop_s')}  every node left {s('left_after_sigterm_s')} and exited 0 "
        f"{s('exit_after_sigterm_s')} after SIGTERM (at most); down -v {s('down_s')}; "
        f"leftovers: {r.get('leftovers', '?')}"
    )
    lines.append(f"total       {s('total_s')}")
    if r.get("error"):
        lines.append("error       " + r["error"].splitlines()[0])
    lines.append("PASSED" if r["passed"] else "FAILED")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
