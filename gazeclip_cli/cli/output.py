"""Everything the CLI prints goes through here: one console for results, one for messages.

Results go to stdout (so ``--format json`` keeps stdout pure JSON); progress, warnings and
errors go to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout, nothing else on the line."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_table(
    title: str | None, columns: list[str], rows: list[list[Any]], *, console: Console = out
) -> None:
    """Render rows as a rich table; numbers right-aligned."""
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        numeric = bool(rows) and all(isinstance(r[i], (int, float)) for r in rows if r[i] is not None)
        table.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*["" if v is None else (f"{v:,.2f}" if isinstance(v, float) else str(v)) for v in row])
    console.print(table)


def info(message: str) -> None:
    err.print(message)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}")


def error(message: str) -> None:
    """An error on stderr, one line: ``error: what went wrong and what to do``."""
    err.print(Text.assemble(("error:", "red"), " ", message))  # not markup: a message may hold [brackets]
