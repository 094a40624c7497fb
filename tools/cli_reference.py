"""Regenerate the CLI reference in README.md from argparse, or check that it is current.

python tools/cli_reference.py          # rewrite the block between the markers
python tools/cli_reference.py --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"
WIDTH = "100"


def reference() -> str:
    os.environ["COLUMNS"] = WIDTH  # argparse wraps help to the terminal width
    sys.path.insert(0, str(ROOT))
    from mycelium.ui.cli import main_parser

    parser = main_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    parts = [START, "", "```text", parser.format_help().rstrip(), "```"]
    for name, sub in commands.choices.items():
        parts += ["", f"#### `mycelium {name}`", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(parts + ["", END])


def main() -> int:
    check = "--check" in sys.argv[1:]
    text = README.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    updated = before + reference() + after
    if check:
        if updated != text:
            print("README.md's CLI reference is out of date: run python tools/cli_reference.py")
            return 1
        print("README.md's CLI reference is current")
        return 0
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
