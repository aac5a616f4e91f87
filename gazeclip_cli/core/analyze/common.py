"""What every analysis shares: the progress record, seeded sampling, the record of its inputs, file writing."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gazeclip_cli.core.data.cache import Cache, CacheRow, cache_fingerprint
from gazeclip_cli.core.errors import ConfigError, DataError
from gazeclip_cli.core.weights.locate import sha256_file

if TYPE_CHECKING:
    from gazeclip_cli.core.model.folder import ModelFolder


@dataclass(frozen=True)
class AnalysisProgress:
    """How far one stage of an analysis is: ``done`` of ``total`` items."""

    stage: str  # what is being counted, e.g. "gaze estimation", "bootstrap", "t-SNE"
    done: int
    total: int


ProgressFn = Callable[[AnalysisProgress], None]


def tell(progress: ProgressFn | None, stage: str, done: int, total: int) -> None:
    """Report progress if anyone listens."""
    if progress is not None:
        progress(AnalysisProgress(stage, done, total))


@dataclass(frozen=True)
class AnalysisFiles:
    """What an analysis wrote."""

    figure: Path
    csv: tuple[Path, ...]
    json: Path
    extra: tuple[Path, ...] = ()  # e.g. the t-SNE input features


# --- sampling -------------------------------------------------------------------------------------


def seeded_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``key`` (a set's name), never on the other sets."""
    digest = hashlib.sha256(f"{seed}/{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def group_rows(
    rows: Sequence[CacheRow], key: Callable[[CacheRow], str] = lambda r: r.generator
) -> dict[str, list[int]]:
    """Row indices per group, groups in first-seen order, rows in file order."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(key(r), []).append(i)
    return groups


def draw(indices: Sequence[int], n: int | None, seed: int, key: str) -> list[int]:
    """``n`` of ``indices`` without replacement, in file order (all of them when ``n`` is None)."""
    if n is None or n >= len(indices):
        return list(indices)
    chosen = seeded_rng(seed, key).choice(len(indices), size=n, replace=False)
    return [indices[i] for i in sorted(chosen)]


def draw_per_group(
    groups: dict[str, list[int]], n: int | None, seed: int, *, where: str, what: str, flag: str
) -> dict[str, list[int]]:
    """``n`` rows of every group (seeded per group); a group with fewer than ``n`` is refused.

    Raises:
        DataError: a group has fewer rows than asked, named with its count and the flag to lower.
    """
    if n is not None and n < 1:
        raise ConfigError(f"{flag} {n}: must be at least 1")
    short = [(name, len(idx)) for name, idx in groups.items() if n is not None and len(idx) < n]
    if short:
        listed = ", ".join(f"{name} {count}" for name, count in short[:4])
        raise DataError(
            f"{where}: fewer {what} than the {n} asked ({flag}): {listed}"
            f"{' and more' if len(short) > 4 else ''}; lower {flag}"
        )
    return {name: draw(idx, n, seed, name) for name, idx in groups.items()}


def check_bootstrap(bootstrap: int, confidence: float) -> None:
    """Refuse a negative resample count or a confidence outside (0, 1)."""
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap {bootstrap}: must be 0 (no interval) or more")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"--confidence {confidence}: must be between 0 and 1")


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap ``values`` (percentile method)."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.asarray(values, dtype=np.float64), [alpha, 1.0 - alpha])
    return float(low), float(high)


def error_bars(
    values: Sequence[float], lows: Sequence[float | None], highs: Sequence[float | None]
) -> np.ndarray | None:
    """matplotlib ``yerr`` (2, n) from intervals around ``values``; None when any interval is missing."""
    if any(v is None for v in (*lows, *highs)):
        return None
    err = np.array([[v - lo, hi - v] for v, lo, hi in zip(values, lows, highs, strict=True)]).T
    return np.clip(err, 0.0, None)


def rows_of(cache: Cache, splits: Sequence[str] | None) -> list[CacheRow]:
    """The cache's rows of the given splits (all rows when ``splits`` is empty or None).

    Raises:
        DataError: no row is in those splits.
    """
    if not splits:
        rows = list(cache.rows)
    else:
        wanted = set(splits)
        rows = [r for r in cache.rows if r.split in wanted]
    if not rows:
        where = (
            f"in the split{'s' if splits and len(splits) > 1 else ''} {', '.join(splits)}" if splits else ""
        )
        raise DataError(f"{cache.folder}: the cache has no rows {where}".rstrip())
    return rows


@dataclass
class Selection:
    """The rows an analysis reads, from one or more caches (e.g. the fakes' and their targets')."""

    caches: list[Cache]
    rows: list[CacheRow]  # every cache's rows of the chosen splits, cache after cache
    owner: list[int]  # index into ``caches`` of each row
    splits: tuple[str, ...]  # empty: every split

    @property
    def where(self) -> str:
        return ", ".join(str(c.folder) for c in self.caches)

    def record(self) -> dict[str, Any]:
        return {
            "caches": [cache_record(c) for c in self.caches],
            "splits": list(self.splits) or "all",
            "rows": len(self.rows),
        }


def select(folders: Sequence[str | os.PathLike[str]], splits: Sequence[str] | None = None) -> Selection:
    """Read the caches and take their rows of ``splits`` (every split when empty).

    Raises:
        ConfigError: no cache given. DataError: a cache is unreadable or has no rows in those splits.
    """
    from gazeclip_cli.core.data.cache import read_cache

    if not folders:
        raise ConfigError("give at least one cache folder")
    caches = [read_cache(f) for f in folders]
    rows, owner = [], []
    for k, cache in enumerate(caches):
        part = rows_of(cache, splits)
        rows += part
        owner += [k] * len(part)
    return Selection(caches=caches, rows=rows, owner=owner, splits=tuple(splits or ()))


# --- what went in -----------------------------------------------------------------------------------


def cache_record(cache: Cache) -> dict[str, Any]:
    """The cache an analysis read: folder, SHA-256 of its index, settings key, gaze estimator, rows."""
    settings = cache.settings
    estimator = None
    if settings is not None and settings.gaze_estimator_fingerprint:
        estimator = {"name": settings.gaze_estimator, "fingerprint": settings.gaze_estimator_fingerprint}
    return {
        "path": str(cache.folder),
        "index_sha256": cache_fingerprint(cache.folder),
        "settings_key": settings.settings.cache_key() if settings is not None else None,
        "gaze_estimator": estimator,
        "rows": len(cache.rows),
    }


def model_record(folder: ModelFolder, label: str) -> dict[str, Any]:
    """A model folder an analysis read: path, label, architecture, SHA-256 of its weights and config."""
    from gazeclip_cli.core.model.folder import CONFIG_FILE, WEIGHTS_FILE

    return {
        "label": label,
        "path": str(folder.path),
        "architecture": folder.model.cfg.name,
        "weights_sha256": sha256_file(folder.path / WEIGHTS_FILE),
        "config_sha256": sha256_file(folder.path / CONFIG_FILE),
        "trained_on": folder.meta.get("trained_on", ""),
        "weight_files": folder.meta.get("weight_files", {}),
    }


def model_labels(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Short distinct labels for model folders: the folder name, with parents added until they differ."""
    parts = [Path(p).resolve().parts for p in paths]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            return labels
        depth += 1


# --- writing ------------------------------------------------------------------------------------------


def prepare_out(out_dir: str | os.PathLike[str]) -> Path:
    """The output folder, created if missing.

    Raises:
        DataError: the path exists and is not a folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # full precision; the printed table rounds
    return value


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV with a header row; None and non-finite numbers are empty cells, floats at full precision."""
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([_cell(v) for v in row] for row in rows)
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror}); check the folder") from None
    return path


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """JSON, indented; a NaN would be a bug upstream and makes the file invalid, so it is refused."""
    try:
        path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror}); check the folder") from None
    return path


# --- model folders ------------------------------------------------------------------------------------


def load_models(
    paths: Sequence[str | os.PathLike[str]],
    weights: Any = None,
    device: Any = "cpu",
    with_text: bool = False,
) -> list[tuple[ModelFolder, str]]:
    """Load each model folder (the text tower only with ``with_text``), each with its label.

    Raises:
        ConfigError: no folder given. ModelFolderError: a folder cannot be loaded.
    """
    from gazeclip_cli.core.model.folder import load_model_folder

    if not paths:
        raise ConfigError("give at least one model folder (--model)")
    labels = model_labels(paths)
    return [
        (load_model_folder(p, weights, device=device, with_text=with_text), label)
        for p, label in zip(paths, labels, strict=True)
    ]


def check_preparation_of(selection: Selection, folders: Sequence[tuple[ModelFolder, str]]) -> list[str]:
    """Refuse a cache prepared otherwise than a model's training cache, as ``evaluate`` does.

    Returns the notes for pairs where either side records no settings (then nothing could be checked).

    Raises:
        DataError: a setting that decides the pixels differs.
    """
    from gazeclip_cli.core.data.cache import settings_of_model
    from gazeclip_cli.core.evaluate.runner import check_preparation

    notes = []
    for folder, _ in folders:
        trained = settings_of_model(folder.meta, folder.path)
        for cache in selection.caches:
            note = check_preparation(trained, cache.settings, folder.path, cache.folder)
            if note and note not in notes:
                notes.append(note)
    return notes
