"""The ``gazeclip`` Typer app and the one place where errors become one line and an exit code:
1 for a core :class:`GazeclipError`, 2 for a usage error. Commands live in
``gazeclip_cli.cli.commands.*``; each module exposes ``register(app)``.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import typer

# Typer's own bundled Click (never the separate click package): its exception base and
# command classes, to print usage errors as one line instead of Typer's boxed panel.
from typer._click.exceptions import ClickException
from typer.core import TyperCommand, TyperGroup

from gazeclip_cli import __version__
from gazeclip_cli.cli import output
from gazeclip_cli.core.errors import GazeclipError

EXIT_ERROR = 1  # a GazeclipError: bad input, missing file, incompatible model folder


class _Dialect:
    """Help that says what to pass: every value its metavar, a flag no ``<bool>`` type, an argument
    its metavar alone (no ``<list[str]>`` beside ``PHOTO...``, no ``{PHOTO...}`` in the usage line)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
            if param.param_type_name == "argument" and param.metavar is not None:
                param.display_type_rich = _no_type  # the metavar says it
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if getattr(self, "options_metavar", None) else []  # type: ignore[attr-defined]
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                continue
            name = param.metavar or param.name.upper()
            name += "" if param.nargs == 1 or name.endswith("...") else "..."
            pieces.append(name if param.required else f"[{name}]")
        return pieces


def _no_type(ctx: Any = None) -> None:
    return None


class GazeclipCommand(_Dialect, TyperCommand):
    """A command of the app."""


class GazeclipGroup(_Dialect, TyperGroup):
    """The app (and its command groups): usage errors become one line on stderr and exit 2."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                output.error(usage_message(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            output.error("aborted")
            sys.exit(EXIT_ERROR)
        sys.exit(code if isinstance(code, int) else 0)


def usage_message(exc: ClickException) -> str:
    """A usage error as one line: the command, what is wrong, where the help is."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return message
    return f"{ctx.command_path}: {message}; see {ctx.command_path} --help"


# Modules under gazeclip_cli.cli.commands, each with a ``register(app)`` function.
# In the order of the workflow; `gazeclip --help` lists them so.
COMMAND_MODULES: list[str] = [
    "build_benchmark",
    "preprocess",
    "train",
    "evaluate",
    "compare",
    "analyze",
    "attribute",
    "scan",
    "demo",
    "export",
    "models",
    "model_info",
    "weights",
    "env",
]

app = typer.Typer(
    name="gazeclip",
    cls=GazeclipGroup,
    help="GazeCLIP deepfake attribution and detection of face images.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    context_settings={"help_option_names": ["-h", "--help"]},
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
    """Turn a core :class:`GazeclipError` into one line on stderr and exit code 1 (:data:`EXIT_ERROR`).

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
            raise typer.Exit(code=EXIT_ERROR) from None

    return wrapper


def _wrap_all(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        info.callback = _reporting_errors(info.callback)
        info.cls = GazeclipCommand
    if typer_app.registered_callback is not None and typer_app.registered_callback.callback is not None:
        cb = typer_app.registered_callback
        cb.callback = _reporting_errors(cb.callback)
    for group in typer_app.registered_groups:
        group.typer_instance.info.cls = GazeclipGroup
        _wrap_all(group.typer_instance)


for _name in COMMAND_MODULES:
    importlib.import_module(f"gazeclip_cli.cli.commands.{_name}").register(app)
_wrap_all(app)


def main() -> None:
    """Console-script entry point."""
    app()
