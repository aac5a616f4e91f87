"""The ``gazeclip`` Typer app and the one place where core errors become exit codes.

Commands live in ``gazeclip_cli.cli.commands.*``; each module exposes ``register(app)``.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import Any

import typer

from gazeclip_cli import __version__
from gazeclip_cli.cli import output
from gazeclip_cli.core.errors import GazeclipError

# Modules under gazeclip_cli.cli.commands, each with a ``register(app)`` function.
# In the order of the workflow; `gazeclip --help` lists them so.
COMMAND_MODULES: list[str] = [
    "build_benchmark",
    "preprocess",
    "train",
    "evaluate",
    "compare",
    "attribute",
    "scan",
    "demo",
    "model_info",
    "weights",
]

app = typer.Typer(
    name="gazeclip",
    help="GazeCLIP deepfake attribution and detection of face images.",
    no_args_is_help=True,
    add_completion=False,
    # Locals would spill tensors and evidence paths into tracebacks.
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        output.out.print(f"gazeclip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """GazeCLIP deepfake attribution and detection of face images."""
    from gazeclip_cli.core.allocator import tune_for_tensors
    from gazeclip_cli.core.cpus import cap_threads_to_quota

    tune_for_tensors()  # CPU forwards 1.2-1.9x faster (core/allocator.py); GAZECLIP_MALLOC_TUNING=0 skips
    cap_threads_to_quota()  # in a container limited to N CPUs, N threads rather than the host's count


def _reporting_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a core :class:`GazeclipError` into one line on stderr and exit code 1.

    ``GAZECLIP_DEBUG=1`` re-raises so the full traceback shows. Any other exception is a
    bug and surfaces with its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GazeclipError as exc:
            if os.environ.get("GAZECLIP_DEBUG") == "1":
                raise
            output.error(str(exc))
            raise typer.Exit(code=1) from None

    return wrapper


def _wrap_all(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        info.callback = _reporting_errors(info.callback)
    if typer_app.registered_callback is not None and typer_app.registered_callback.callback is not None:
        cb = typer_app.registered_callback
        cb.callback = _reporting_errors(cb.callback)
    for group in typer_app.registered_groups:
        _wrap_all(group.typer_instance)


for _name in COMMAND_MODULES:
    importlib.import_module(f"gazeclip_cli.cli.commands.{_name}").register(app)
_wrap_all(app)


def main() -> None:
    """Console-script entry point."""
    app()
