"""Figures drawn on matplotlib's Agg canvas directly (no pyplot): no display, no global backend state.

Used by ``evaluate`` (the robustness plot) and ``analyze`` (the paper's figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gazeclip_cli.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_FORMATS = ("png", "svg")
FIGURE_DPI = 150


def check_figure_format(fmt: str) -> str:
    """``fmt`` if it is a figure format this tool writes (png, svg), else a one-line error."""
    if fmt not in FIGURE_FORMATS:
        raise ConfigError(f"figure format '{fmt}': choose {' or '.join(FIGURE_FORMATS)}")
    return fmt


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure on its own Agg canvas, constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_dir: Path, stem: str, fmt: str) -> Path:
    """Save as ``<stem>.png`` (150 dpi) or ``<stem>.svg``; returns the path."""
    path = out_dir / f"{stem}.{check_figure_format(fmt)}"
    try:
        fig.savefig(path, dpi=FIGURE_DPI, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    except OSError as exc:
        raise DataError(f"{path}: cannot write the figure ({exc.strerror}); check the folder") from None
    return path


def colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinguishable colours (tab10, then tab20, then a sampled hue wheel)."""
    from matplotlib import colormaps

    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["hsv"]
    return [cmap(i / n) for i in range(n)]
