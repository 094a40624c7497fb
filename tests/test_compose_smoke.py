"""docker-compose.yml and the Dockerfile, for real: built and run with podman (marker `compose`).

Not in the default run: `python -m pytest -m compose` (about 5 min with a cached base image, under
15 min from nothing; it installs podman and podman-compose where they are missing, as README
"With podman" says). The mesh run itself is benchmarks/compose_smoke.py, which prints its report.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "compose_smoke.py"

pytestmark = pytest.mark.compose


def load_smoke():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("compose_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def podman_ready() -> Path:
    """podman, the base image and the torch CPU wheel, set up as the smoke run does; the wheel."""
    smoke = load_smoke()
    smoke.setup(torch_index=None)
    (wheel,) = sorted((ROOT / "wheels").glob("torch-2.13.0+cpu-*.whl"))[:1]
    return wheel


def build_context(tmp_path: Path) -> Path:
    """What the Dockerfile needs of the repository, without wheels/."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("Dockerfile", "pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "mycelium", context / "mycelium", ignore=shutil.ignore_patterns("__pycache__"))
    return context


def podman_build(context: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The torch stage only; `--layers=false` leaves no cached layers behind."""
    return subprocess.run(
        ["podman", "build", "--pull=never", "--target", "torch", *args, str(context)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_mesh_builds_runs_learns_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """Build, `up`, ten nodes in groups at >= 0.90 on digits, metrics scraped, `down -v`, clean."""
    report_file = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--timeout", "900", "--json", str(report_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=960,
    )
    print(result.stdout[-6000:], result.stderr[-2000:])
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads(report_file.read_text())
    assert report["passed"] and report["leftovers"] == "none"
    assert report["image"]["torch"] == "2.13.0+cpu" and report["image"]["cuda"] is None
    assert report["image"]["nvidia"] == [] and report["image"]["uid"] != 0
    assert report["image"]["entrypoint"] == ["mycelium-node"]
    assert len(report["nodes"]) == 10
    assert all(node["accuracy"] >= 0.90 and node["members"] >= 2 for node in report["nodes"].values())
    assert report["total_s"] < 900


def test_the_image_refuses_any_torch_but_the_cpu_build_of_2_13_0(podman_ready: Path, tmp_path: Path) -> None:
    """No wheel and no index: the build stops with a message that names what it ignored."""
    context = build_context(tmp_path)
    result = podman_build(context, "--layers=false")
    assert result.returncode != 0
    assert "no CPU build of torch 2.13.0" in result.stderr + result.stdout
    (context / "wheels").mkdir()
    for name in ("torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl", "torch-2.12.0+cpu-cp311-none-any.whl"):
        (context / "wheels" / name).write_bytes(b"not a wheel")
    result = podman_build(context, "--layers=false")
    output = result.stderr + result.stdout
    assert result.returncode != 0 and "no CPU build of torch 2.13.0" in output
    (message,) = [line for line in output.splitlines() if line.startswith("ERROR: no CPU build")]
    assert "Not used" in message and "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl" in message


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_the_image_installs_cpu_torch_from_an_index_given_as_build_arg(
    podman_ready: Path, tmp_path: Path
) -> None:
    """What a Docker user with internet does (TORCH_INDEX = PyTorch's CPU wheel index), here with
    a local index holding the same wheel; no wheels/ in the context."""
    index = tmp_path / "index" / "torch"
    index.mkdir(parents=True)
    (index / podman_ready.name).symlink_to(podman_ready)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(index.parent))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tag = "localhost/mycsmoke-torch-index:test"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        result = podman_build(
            build_context(tmp_path),
            *("--layers=false", "--network", "host", "--build-arg", f"TORCH_INDEX={url}", "-t", tag),
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert "torch 2.13.0+cpu cuda None" in result.stdout
        check = subprocess.run(
            ["podman", "run", "--rm", tag, "python", "-c", "import torch; print(torch.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.stdout.split()[-1] == "2.13.0+cpu"
    finally:
        server.shutdown()
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, timeout=120)
