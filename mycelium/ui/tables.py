"""Tables that stay whole when stdout is not a terminal.

Rich fits a table to the console, and a console that is not a terminal is 80 columns wide: piped
into a file or `less`, cells come out cut to "0.9…" and "finis…". Off a terminal we print the same
rich.Table as plain aligned text instead, every cell whole, one line per row (a cell with several
lines spans several), so that it can be read, grepped and diffed. Cells are taken as plain text.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

GAP = "  "


def print_table(console: Console, table: Table) -> None:
    """The Rich table on a terminal, plain aligned text otherwise."""
    if console.is_terminal:
        console.print(table)
    else:
        console.print(plain_table(table), soft_wrap=True, markup=False, highlight=False)


def print_line(console: Console, text: str) -> None:
    """A line of text that is never wrapped or cut, whatever the console's width."""
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def plain_table(table: Table) -> str:
    columns = table.columns
    header = [_text(column.header) for column in columns]
    rows: list[list[str]] = []
    for cells in zip(*(list(column.cells) for column in columns), strict=True):
        parts = [_text(cell).split("\n") for cell in cells]
        for line in range(max(len(p) for p in parts)):
            rows.append([p[line] if line < len(p) else "" for p in parts])
    widths = [max(cell_len(row[i]) for row in [header, *rows]) for i in range(len(columns))]
    right = [column.justify == "right" for column in columns]

    def line(values: list[str]) -> str:
        padded = [
            " " * (w - cell_len(v)) + v if r else v + " " * (w - cell_len(v))
            for v, w, r in zip(values, widths, right, strict=True)
        ]
        return GAP.join(padded).rstrip()

    lines = [_text(table.title)] if table.title else []
    return "\n".join([*lines, line(header), *(line(row) for row in rows)])


def _text(cell: object) -> str:
    if isinstance(cell, Text):
        return cell.plain
    return "" if cell is None else str(cell)
