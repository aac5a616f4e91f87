"""The benchmark manifest: one CSV row per sample, plus a JSON summary beside it.

Written by ``gazeclip build-benchmark``; read by ``preprocess``, ``train`` and ``evaluate``
through :func:`read_manifest`. The columns and their order are fixed (docs/ARCHITECTURE.md):

    path, split, dfd_label, dfa_label, generator, forgery_type, architecture, source,
    video_id, frame_index, prompt_name

(``prompt_name``, how the level-4 prompt names the generator, came last; a manifest
without it still reads, with the generator's name in its place.)

Path rule: a file inside the manifest's folder (at any depth) is written relative to that
folder with ``/`` separators, so the folder can be moved or shared as a whole; any other
file is written as an absolute path. Relative paths are resolved against the manifest's
folder when read. A row whose path is a video file names one frame of it (``frame_index``);
a row for an extracted frame keeps its video id and frame number; a still image has both
empty.

The summary (``<manifest stem>.summary.json``) records the protocol, seed, roots, the
per-generator wanted / found / usable counts and every problem found.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from gazeclip_cli.core.data.protocol import ARCHITECTURES, FORGERY_TYPES, SPLITS
from gazeclip_cli.core.errors import DataError

MANIFEST_COLUMNS = (
    "path",
    "split",
    "dfd_label",
    "dfa_label",
    "generator",
    "forgery_type",
    "architecture",
    "source",
    "video_id",
    "frame_index",
    "prompt_name",
)
LEGACY_COLUMNS = MANIFEST_COLUMNS[:-1]  # manifests written before prompt_name
SUMMARY_SUFFIX = ".summary.json"


class ManifestRow(NamedTuple):
    """One sample of the benchmark (a named tuple: immutable, and cheap to make by the hundred thousand)."""

    path: str  # as written: relative to the manifest's folder ("/"-separated) or absolute
    split: str  # "train", "val" or "test"
    dfd_label: int  # 0 real, 1 fake
    dfa_label: int  # 0 real, 1..K seen generator, -1 unseen
    generator: str  # protocol name, e.g. "StyleGAN2"
    forgery_type: str  # EFS, FS, AM, FR, TF or Real
    architecture: str  # GAN, Diffusion, Flow, Other or Real
    source: str  # source dataset, e.g. "GenFace"
    video_id: str  # source video ("" for still images)
    frame_index: int | None  # frame number within the video (None for still images)
    prompt_name: str = ""  # the generator as the level-4 prompt names it ("" = generator)


@dataclass(frozen=True)
class Manifest:
    """A manifest read from disk; :meth:`resolve` turns a row's path into a usable file path."""

    path: Path  # the CSV file
    rows: tuple[ManifestRow, ...]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve(self, row: ManifestRow) -> Path:
        """The file a row names: relative paths are relative to the manifest's folder."""
        p = Path(row.path)
        return p if p.is_absolute() else self.folder / p

    def split(self, name: str) -> list[ManifestRow]:
        """Rows of one split ("train", "val" or "test")."""
        if name not in SPLITS:
            raise DataError(f"{self.path}: unknown split '{name}' (splits are {', '.join(SPLITS)})")
        return [r for r in self.rows if r.split == name]

    def generators(self) -> list[str]:
        """Generator names in order of first appearance."""
        return list(dict.fromkeys(r.generator for r in self.rows))

    def attribution_classes(self) -> list[str]:
        """Names of the attribution classes, index = DFA label, from the rows with a DFA label >= 0.

        Raises:
            DataError: two generators share a DFA label, one generator has two, or the labels
                are not 0..K-1 (the attribution head needs one output per class).
        """
        by_label: dict[int, str] = {}
        for r in self.rows:
            if r.dfa_label < 0:
                continue
            other = by_label.setdefault(r.dfa_label, r.generator)
            if other != r.generator:
                raise DataError(
                    f"{self.path}: DFA label {r.dfa_label} is used by both {other} and {r.generator}"
                )
        labels = sorted(by_label)
        if labels != list(range(len(labels))):
            raise DataError(f"{self.path}: DFA labels must be 0..{len(labels) - 1}, got {labels}")
        names = [by_label[i] for i in labels]
        if len(set(names)) != len(names):
            raise DataError(f"{self.path}: a generator has two DFA labels")
        return names


def summary_path(manifest_path: str | Path) -> Path:
    """The summary JSON beside a manifest: ``out/bench.csv`` -> ``out/bench.summary.json``."""
    p = Path(manifest_path)
    return p.with_name(p.stem + SUMMARY_SUFFIX)


def manifest_path_for(file_path: str, manifest_dir: str) -> str:
    """How ``file_path`` (absolute) is written in a manifest stored in ``manifest_dir`` (absolute)."""
    prefix = manifest_dir.rstrip(os.sep) + os.sep
    if file_path.startswith(prefix):
        return file_path[len(prefix) :].replace(os.sep, "/")
    return file_path


def format_manifest(rows: Iterable[ManifestRow]) -> str:
    """The manifest CSV text (UTF-8, ``\\n`` line ends) for rows whose paths are already final."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    # The fields are the columns, in order; csv writes None (no frame index) as "".
    writer.writerows(rows)
    return buf.getvalue()


def write_manifest(path: str | Path, rows: Sequence[ManifestRow]) -> str:
    """Write rows (with absolute paths) as a manifest at ``path``, applying the path rule.

    The file is written to a temporary name and renamed, so a reader never sees half a
    manifest.

    Returns:
        The SHA-256 of the written bytes.
    """
    path = Path(os.path.abspath(path))
    folder = str(path.parent)
    final = [r._replace(path=manifest_path_for(r.path, folder)) for r in rows]
    data = format_manifest(final).encode("utf-8")
    _atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def write_summary(path: str | Path, summary: dict[str, Any]) -> None:
    """Write a summary dict as indented JSON (keys in insertion order), atomically."""
    data = (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    _atomic_write(Path(path), data)


def read_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest written by ``gazeclip build-benchmark``.

    Args:
        path: the manifest CSV.

    Returns:
        The :class:`Manifest`; row paths are kept as written (use :meth:`Manifest.resolve`).

    Raises:
        DataError: the file is missing, its header is not exactly the manifest columns, or a
            row has a bad value; the message names the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: manifest not found; create it with gazeclip build-benchmark") from None
    except UnicodeDecodeError:
        raise DataError(
            f"{path}: manifest is not UTF-8 text; rebuild it with gazeclip build-benchmark"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc.strerror})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: manifest is empty; rebuild it with gazeclip build-benchmark")
    if tuple(header) not in (MANIFEST_COLUMNS, LEGACY_COLUMNS):
        raise DataError(
            f"{path}: manifest header must be {','.join(MANIFEST_COLUMNS)}; got {','.join(header)}"
        )
    legacy = tuple(header) == LEGACY_COLUMNS
    rows: list[ManifestRow] = []
    for line_no, fields in enumerate(reader, start=2):
        if not fields:
            continue
        rows.append(_parse_row(fields + [""] if legacy else fields, f"{path} line {line_no}"))
    return Manifest(path=path, rows=tuple(rows))


def read_summary(manifest_path: str | Path) -> dict[str, Any]:
    """The summary JSON written beside a manifest.

    Raises:
        DataError: the summary is missing or is not JSON.
    """
    p = summary_path(manifest_path)
    try:
        with open(p, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DataError(
            f"{p}: summary not found beside the manifest; rebuild with gazeclip build-benchmark"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: cannot read the summary ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{p}: summary is not a JSON object")
    return data


def _parse_row(fields: list[str], where: str) -> ManifestRow:
    if len(fields) != len(MANIFEST_COLUMNS):
        raise DataError(f"{where}: expected {len(MANIFEST_COLUMNS)} columns, got {len(fields)}")
    path, split, dfd, dfa, generator, forgery_type, architecture, source, video_id, frame, prompt_name = (
        fields
    )
    if not path:
        raise DataError(f"{where}: empty path")
    if split not in SPLITS:
        raise DataError(f"{where}: split '{split}' is not one of {', '.join(SPLITS)}")
    dfd_label = _int(dfd, "dfd_label", where)
    if dfd_label not in (0, 1):
        raise DataError(f"{where}: dfd_label must be 0 or 1, got {dfd}")
    dfa_label = _int(dfa, "dfa_label", where)
    if dfa_label < -1:
        raise DataError(f"{where}: dfa_label must be -1 (unseen) or >= 0, got {dfa}")
    if forgery_type not in FORGERY_TYPES:
        raise DataError(f"{where}: forgery_type '{forgery_type}' is not one of {', '.join(FORGERY_TYPES)}")
    if architecture not in ARCHITECTURES:
        raise DataError(f"{where}: architecture '{architecture}' is not one of {', '.join(ARCHITECTURES)}")
    if not generator:
        raise DataError(f"{where}: empty generator")
    frame_index = None if frame == "" else _int(frame, "frame_index", where)
    if frame_index is not None and frame_index < 0:
        raise DataError(f"{where}: frame_index cannot be negative, got {frame}")
    return ManifestRow(
        path,
        split,
        dfd_label,
        dfa_label,
        generator,
        forgery_type,
        architecture,
        source,
        video_id,
        frame_index,
        prompt_name,
    )


def _int(text: str, column: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{where}: {column} must be an integer, got '{text}'") from None


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{path}: cannot write ({exc.strerror})") from None
