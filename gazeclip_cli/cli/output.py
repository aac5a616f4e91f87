"""Everything the CLI prints: results on stdout; messages, errors and the one progress bar on stderr.

Output fits the terminal and never truncates (docs/DECISIONS.md, "The command line").
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.progress import Progress, Task
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

FORMATS = ("table", "json")  # --format: the human view, or JSON on stdout and nothing else there


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout, nothing else on the line."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


# Prose


def prose(text: str, *, console: Console | None = None, indent: int = 0, style: str = "") -> None:
    """A paragraph wrapped at word boundaries to the console's width (a longer word keeps its line)."""
    console = console or out
    body = Text(text, style=style, overflow="fold")
    console.print(Padding(body, (0, 0, 0, indent)) if indent else body, soft_wrap=False)


def info(message: str) -> None:
    """A message on stderr, one line (the terminal wraps it)."""
    err.print(Text(message))


def warn(message: str) -> None:
    """A warning on stderr, one line."""
    err.print(Text.assemble(("warning:", "yellow"), " ", message))


def error(message: str) -> None:
    """An error on stderr, one line: ``error: what went wrong and what to do``."""
    err.print(Text.assemble(("error:", "red"), " ", message))  # not markup: a message may hold [brackets]


# Tables


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _longest_word(text: str) -> int:
    return max((Text(w).cell_len for w in text.split()), default=0)


def _longest_line(text: str) -> int:
    return max((Text(line).cell_len for line in text.splitlines()), default=0)


def _overhead(n: int) -> int:
    """Characters a rich table with ``n`` columns adds: one space either side, a border between and at the edges."""
    return 3 * n + 1


def fit_widths(minimum: Sequence[int], maximum: Sequence[int], available: int) -> list[int] | None:
    """Column widths within ``available`` characters, each between its minimum and maximum.

    The widest column gives up a character until the total fits; None when even the
    minimums (the longest word of each column) do not fit.
    """
    widths = [max(lo, hi) for lo, hi in zip(minimum, maximum, strict=True)]
    excess = sum(widths) - available
    while excess > 0:
        shrinkable = [i for i, w in enumerate(widths) if w > minimum[i]]
        if not shrinkable:
            return None
        i = max(shrinkable, key=lambda k: (widths[k], -k))
        widths[i] -= 1
        excess -= 1
    return widths


def _chunks(
    minimum: list[int], maximum: list[int], keys: int, width: int
) -> list[tuple[list[int], list[int] | None]]:
    """Groups of column indices (the key columns first in each) that fit ``width``, with their widths."""
    key_cols = list(range(keys))
    rest = list(range(keys, len(minimum)))

    def widths(cols: list[int]) -> list[int] | None:
        return fit_widths(
            [minimum[c] for c in cols], [maximum[c] for c in cols], width - _overhead(len(cols))
        )

    groups: list[tuple[list[int], list[int] | None]] = []
    current: list[int] = []
    for c in rest:
        if widths(key_cols + current + [c]) is not None:
            current.append(c)
            continue
        if current:
            groups.append((key_cols + current, widths(key_cols + current)))
        current = [c]
        if widths(key_cols + current) is None:  # one word wider than the screen: it folds, alone
            groups.append((key_cols + current, None))
            current = []
    if current or not groups:
        cols = key_cols + current
        groups.append((cols, widths(cols)))
    return groups


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    console: Console | None = None,
    key_columns: int = 1,
    styles: Sequence[Sequence[str | None]] | None = None,
    digits: int = 2,
) -> None:
    """Rows as a table that fits the console: split into several tables (the key columns repeated
    in each) when too wide, cells wrapped at word boundaries; numbers right-aligned; ``None`` is ``-``.
    ``styles``, when given, holds a rich style (or None) per cell: values are never read as markup;
    floats show ``digits`` decimals."""
    console = console or out
    texts = [[_cell(v, digits) for v in row] for row in rows]
    numeric = [
        bool(rows) and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
        for i in range(len(columns))
    ]
    minimum = [
        max([_longest_word(columns[i])] + [_longest_word(r[i]) for r in texts], default=1)
        for i in range(len(columns))
    ]
    maximum = [
        max([_longest_line(columns[i])] + [_longest_line(r[i]) for r in texts], default=1)
        for i in range(len(columns))
    ]
    keys = min(key_columns, len(columns))
    groups = _chunks(minimum, maximum, keys, console.width)
    for n, (cols, widths) in enumerate(groups, start=1):
        if title:
            suffix = f" ({n} of {len(groups)})" if len(groups) > 1 else ""
            prose(title + suffix, console=console, style="bold")
        table = Table(box=box.HEAVY_HEAD, expand=False, show_edge=True)
        for k, c in enumerate(cols):
            table.add_column(
                Text(columns[c]),
                justify="right" if numeric[c] else "left",
                width=None if widths is None else widths[k],
                overflow="fold",
            )
        for i, r in enumerate(texts):
            table.add_row(*(Text(r[c], style=(styles[i][c] if styles else None) or "") for c in cols))
        console.print(table, soft_wrap=False)


def print_fields(
    title: str | None, rows: Sequence[tuple[str, Any]], *, console: Console | None = None
) -> None:
    """A two-column (field, value) table."""
    print_table(title, ["field", "value"], [[k, v] for k, v in rows], console=console)


# Progress


# Pieces of a progress line in display order, and the order they are dropped in when the
# line does not fit (least useful first); the label and the count always stay.
_PIECES = ("label", "bar", "count", "rate", "elapsed", "eta", "status")
_DROP_ORDER = ("elapsed", "rate", "bar", "eta", "status")
BAR_MIN, BAR_MAX = 10, 40


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _FittedProgress(Progress):
    """rich's Progress, each task drawn as one line of the pieces that fit the console's width."""

    def __init__(self, unit: str, console: Console) -> None:
        self.unit = unit  # before Progress.__init__, which draws a first (empty) frame
        super().__init__(console=console, transient=True, refresh_per_second=4)

    def pieces(self, task: Task) -> dict[str, str]:
        total = task.total
        count = f"{int(task.completed):,}/{int(total):,}" if total is not None else f"{int(task.completed):,}"
        speed = task.finished_speed or task.speed
        return {
            "label": task.description,
            "count": f"{count} {self.unit}",
            "rate": f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s",
            "elapsed": _clock(task.finished_time if task.finished else task.elapsed),
            "eta": f"ETA {_clock(task.time_remaining)}" if total is not None else "",
            "status": str(task.fields.get("status", "")),
        }

    def line(self, task: Task, width: int) -> Table:
        texts = {k: v for k, v in self.pieces(task).items() if v}
        keep = [p for p in _PIECES if p in texts or p == "bar"]

        def used(names: list[str]) -> int:
            words = [Text(texts[n]).cell_len for n in names if n != "bar"]
            return sum(words) + len(names) - 1 + (BAR_MIN if "bar" in names else 0)

        for victim in _DROP_ORDER:
            if used(keep) <= width:
                break
            if victim in keep:
                keep.remove(victim)
        grid = Table.grid(padding=(0, 1))
        cells: list[RenderableType] = []
        for name in keep:
            if name == "bar":
                bar_width = min(BAR_MAX, BAR_MIN + width - used(keep))
                grid.add_column(width=bar_width, no_wrap=True)
                cells.append(
                    ProgressBar(
                        total=task.total, completed=task.completed, width=bar_width, pulse=task.total is None
                    )
                )
            else:
                grid.add_column(no_wrap=True)
                cells.append(Text(texts[name]))
        grid.add_row(*cells)
        return grid

    def render(self, width: int) -> Group:
        """Every visible task, one line each, within ``width`` characters."""
        return Group(*(self.line(t, width) for t in self.tasks if t.visible))

    def get_renderables(self) -> Iterator[RenderableType]:
        width = self.live.console.width if hasattr(self, "live") else 80
        yield self.render(width - 1)  # some terminals wrap when the last column is written


class Bar:
    """The progress bar of a command: one line, ``label  bar  done/total unit  rate  elapsed  ETA  status``.

    Disabled (every call a no-op, messages still printed) when stderr is not a terminal or
    the command was asked to be quiet.
    """

    def __init__(self, label: str, unit: str, *, enabled: bool, console: Console | None = None) -> None:
        self.console = console or err
        self.enabled = enabled
        self.progress = _FittedProgress(unit, self.console)
        self.task = self.progress.add_task(label, total=None, status="", start=True)

    def update(
        self,
        done: int | None = None,
        total: int | None = None,
        *,
        status: str | None = None,
        label: str | None = None,
        unit: str | None = None,
        restart: bool = False,
    ) -> None:
        """Move the bar; ``restart`` begins a new stage (the rate and ETA start afresh)."""
        if unit is not None:
            self.progress.unit = unit
        if restart:
            self.progress.reset(self.task, total=total, completed=done or 0)
        fields: dict[str, Any] = {}
        if status is not None:
            fields["status"] = status
        if label is not None:
            fields["description"] = label
        if total is not None:
            fields["total"] = total
        if done is not None:
            fields["completed"] = done
        self.progress.update(self.task, **fields)

    def print(self, message: str) -> None:
        """A line above the bar (or on stderr when the bar is off), wrapped at word boundaries."""
        prose(message, console=self.console)

    def frame(self, width: int = 80) -> str:
        """The bar as it would be drawn on a terminal ``width`` columns wide, as plain text."""
        buf = io.StringIO()
        console = Console(file=buf, width=width, color_system=None, legacy_windows=False)
        console.print(self.progress.render(width - 1))
        return buf.getvalue()


@contextmanager
def progress(label: str, unit: str, *, quiet: bool = False, console: Console | None = None) -> Iterator[Bar]:
    """A :class:`Bar` shown on stderr while the block runs (when stderr is a terminal and not ``quiet``)."""
    target = console or err
    bar = Bar(label, unit, enabled=not quiet and target.is_terminal, console=target)
    if not bar.enabled:
        yield bar
        return
    with bar.progress:
        yield bar
