"""Typed errors of the core. Each message says what went wrong and what to do.

The CLI turns any :class:`GazeclipError` into one line on stderr and exit code 1;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GazeclipError(Exception):
    """Base class of every error the core raises on purpose."""


class ConfigError(GazeclipError):
    """A configuration file or value is invalid (unknown key, wrong type, bad range)."""


class WeightsError(GazeclipError):
    """A weight file is missing, unreadable or does not fit the architecture."""


class ModelFolderError(GazeclipError):
    """A trained model folder is missing a file or was written by an incompatible version."""


class DataError(GazeclipError):
    """A dataset, manifest or cache is missing or malformed."""


class InputError(GazeclipError):
    """One input file (image or video) cannot be used; the message names the file."""


def unknown_key_message(key: str, known: Iterable[str], where: str) -> str:
    """Message for an unknown configuration key, suggesting the closest known one."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
    return f"{where}: unknown key '{key}'{hint}"
