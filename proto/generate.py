"""Regenerate mycelium/proto/ from proto/mycelium.proto, or check that it is up to date.

    python proto/generate.py          # write mycelium/proto/mycelium_pb2.py(.pyi)
    python proto/generate.py --check  # exit 1 if the committed code differs from a fresh build

Uses grpcio-tools from the `dev` extra, pinned so that its protoc is no newer than the protobuf
runtime the project allows (generated code refuses to load on an older runtime).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "mycelium" / "proto"
GENERATED = ("mycelium_pb2.py", "mycelium_pb2.pyi")


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # dev dependency, imported only here

    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        str(PROTO_DIR / "mycelium.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def stale_files() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [
            name
            for name in GENERATED
            if not (OUT_DIR / name).exists()
            or (Path(tmp) / name).read_bytes() != (OUT_DIR / name).read_bytes()
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    if parser.parse_args().check:
        stale = stale_files()
        if stale:
            print(f"stale generated code: {', '.join(stale)}; run python proto/generate.py")
            return 1
        print("generated code matches proto/mycelium.proto")
        return 0
    generate(OUT_DIR)
    print(f"wrote {', '.join(GENERATED)} to {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
