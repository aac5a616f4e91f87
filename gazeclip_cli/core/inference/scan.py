"""Scan folders of evidence: streaming, batched, resumable, one output row per face.

Walk (:func:`iter_inputs`): each root (a folder or a file) is walked depth-first in
byte order of the names, with ``os.scandir``, one folder listing at a time: memory grows
with the largest single folder and the depth, never with the number of files. Files with
an image or video extension are inputs (whatever their content: a non-image called
``x.jpg`` gives an error row); other files are counted as ignored. Folder symbolic links
are followed once (a folder reached again, as in a link cycle, is an error row); a link
loop is an error row whatever its name; a broken link with an image or video extension
is an error row.

Pipeline (:func:`scan`): stage 1 of the predictor (read, decode, detect, crop, normalise)
runs in a pool of ``workers`` threads, at most ``batch_size + 2 * workers`` files ahead
of the model; the faces of each group of ``batch_size`` consecutive walk positions are cut
into batches of at most ``batch_size``, in walk order, so batch boundaries sit at fixed
positions of the walk (a resume re-forms the same batches). On a CPU the
same threads also run the model's batches, each forward with ``model_threads`` intra-op
threads (default: the cores divided among the workers, so one each on a small machine):
every core alternates between preparing files and running batches, none waits for the
other stage, and a single-threaded forward wastes no time in OpenMP's fork and join (on
this project's 2-core machine, one-thread forwards side by side need 8-38% less CPU than
one two-thread forward for the same faces; ``docs/PERFORMANCE.md``). On CUDA the calling thread
runs the model and the threads only prepare. Files are handled in walk order whatever
order the threads finish in, and the batches are the same whichever thread runs them,
so outputs are the same from run to run.

Output: CSV or JSONL (by the file's suffix), one row per face, an error row per file
that cannot be scored, and for a video one row per sampled frame's face plus one
``video`` row with the video-level verdict. All rows of a file are written in one write
and flushed before the next file. A provenance file ``<out>.provenance.json`` is written
beside it. ``resume``: the rows of the last file in the output (which a killed scan may
have left incomplete, perhaps with a partial last line) are cut off, every other file
in the output is skipped, and the scan continues in the same walk order: each file ends
up with exactly one set of rows. The files of the resumed file's walk group that are in
the output already are prepared and run again, not written, so every batch, and every
row, equals an uninterrupted scan's byte for byte (same settings and threads per forward),
whichever engine runs them (the Ray engine's groups are the same walk groups).
Each run's provenance entry says how it ended: finished, interrupted, an error, or killed
(no end recorded; found by the resume).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import torch

from gazeclip_cli.core.cpus import usable_cores
from gazeclip_cli.core.data.images import display_path, is_image_path, is_video_path
from gazeclip_cli.core.errors import ConfigError, DataError
from gazeclip_cli.core.inference.predictor import (
    FacePrediction,
    InputPreparer,
    InputResult,
    Predictor,
    PreparedFace,
    PreparedInput,
    VideoVerdict,
    error_reason,
)
from gazeclip_cli.core.inference.provenance import utc_now

COLUMNS: tuple[str, ...] = (
    "file",
    "kind",
    "frame",
    "face",
    "verdict",
    "p_fake",
    "generator",
    "generator_probability",
    "unknown",
    "top3",
    "gaze_pitch",
    "gaze_yaw",
    "face_box",
    "sha256",
    "error",
)
FORMATS = {".csv": "csv", ".jsonl": "jsonl"}
DECIMALS = 6
SWITCH_INTERVAL_S = 0.0005  # GIL switch interval while preparing threads run beside the model


def printable_path(path: str | os.PathLike[str]) -> str:
    """The ``file`` value of a row: undecodable bytes and control characters as ``\\xNN`` escapes.

    Escaping control characters keeps every row on one line (a file name may hold a newline).
    """
    return _escape_controls(display_path(path))


def _escape_controls(text: str) -> str:
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)


@dataclass(frozen=True)
class ScanItem:
    """One thing the walk found: an input file, or a path that failed before reading."""

    path: str  # file system path (str; undecodable bytes surrogate-escaped)
    kind: str  # "image", "video" or "folder"
    error: str | None = None  # set when the walk itself failed here


@dataclass
class WalkStats:
    """What the walk skipped."""

    ignored: int = 0  # files without an image or video extension


def _sort_key(entry: os.DirEntry[str]) -> bytes:
    return os.fsencode(entry.name)


def _list_dir(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=_sort_key)


def _folder_error(path: str, exc: OSError) -> str:
    name = display_path(path)
    if isinstance(exc, PermissionError):
        return f"{name}: folder not readable (permission denied); make it readable (chmod +rx)"
    if exc.errno == errno.ELOOP:
        return f"{name}: symbolic link loop; fix or remove the link"
    return f"{name}: cannot list folder ({exc.strerror})"


def _walk_dir(root: str, visited: set[tuple[int, int]], stats: WalkStats) -> Iterator[ScanItem]:
    """Depth-first, name-ordered; a stack of per-folder listings (one listing per depth level)."""
    try:
        listing = _list_dir(root)
    except OSError as exc:
        yield ScanItem(root, "folder", _folder_error(root, exc))
        return
    stack: list[Iterator[os.DirEntry[str]]] = [iter(listing)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path = entry.path
        try:
            is_dir = entry.is_dir()
        except OSError as exc:  # a link loop makes stat fail with ELOOP
            if exc.errno == errno.ELOOP:
                yield ScanItem(path, _kind_of(path) or "folder", _folder_error(path, exc))
            continue
        if is_dir:
            try:
                st = entry.stat()
                key = (st.st_dev, st.st_ino)
                if key in visited:
                    yield ScanItem(
                        path,
                        "folder",
                        f"{display_path(path)}: folder already scanned through another path "
                        "(symbolic link cycle or second link); skipped",
                    )
                    continue
                visited.add(key)
                sub = _list_dir(path)
            except OSError as exc:
                yield ScanItem(path, "folder", _folder_error(path, exc))
                continue
            stack.append(iter(sub))
            continue
        kind = _kind_of(path)
        if kind is None:
            stats.ignored += 1
            continue
        yield ScanItem(path, kind)


def _kind_of(path: str) -> str | None:
    if is_video_path(path):
        return "video"
    if is_image_path(path):
        return "image"
    return None


def iter_inputs(
    roots: Iterable[str | os.PathLike[str]], stats: WalkStats | None = None
) -> Iterator[ScanItem]:
    """Every input under the roots, in a deterministic order, streaming (see the module docstring).

    Args:
        roots: folders or files; a file named directly is an input whatever its extension.
        stats: receives the count of ignored files.
    """
    stats = stats if stats is not None else WalkStats()
    visited: set[tuple[int, int]] = set()
    seen_roots: set[str] = set()
    for root in roots:
        root = os.fspath(root)
        norm = os.path.normpath(root)
        if norm in seen_roots:
            continue
        seen_roots.add(norm)
        try:
            st = os.stat(root)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not os.path.islink(root):
                yield ScanItem(root, _kind_of(root) or "folder", f"{display_path(root)}: not found")
            else:
                # Broken links, loops and unreadable paths: the predictor's checks say which.
                yield ScanItem(root, _kind_of(root) or "image")
            continue
        if stat.S_ISDIR(st.st_mode):
            visited.add((st.st_dev, st.st_ino))
            yield from _walk_dir(root, visited, stats)
        else:
            yield ScanItem(root, _kind_of(root) or "image")


def count_inputs(roots: Iterable[str | os.PathLike[str]]) -> int:
    """How many items :func:`iter_inputs` yields (a quick walk, for a progress bar's total)."""
    return sum(1 for _ in iter_inputs(roots))


# Rows


def _num(x: float | None, fmt: str) -> Any:
    if x is None:
        return "" if fmt == "csv" else None
    return f"{x:.{DECIMALS}f}" if fmt == "csv" else round(float(x), DECIMALS)


def _flag(x: bool, fmt: str) -> Any:
    return ("true" if x else "false") if fmt == "csv" else x


def _empty(fmt: str) -> Any:
    return "" if fmt == "csv" else None


def _box(box: tuple[float, float, float, float] | None, fmt: str) -> Any:
    """CSV: ``x0 y0 x1 y1``; JSONL: ``[x0, y0, x1, y1]``, as ``attribute --format json`` writes it."""
    if box is None:
        return _empty(fmt)
    if fmt == "jsonl":
        return [round(float(v), 1) for v in box]
    return " ".join(f"{v:.1f}" for v in box)


def _top3(top: Iterable[Any], fmt: str) -> Any:
    """CSV: ``name=p;name=p;name=p``; JSONL: ``[{"name", "probability"}, ...]`` as attribute's ``top``."""
    if fmt == "jsonl":
        return [{"name": c.name, "probability": round(float(c.probability), DECIMALS)} for c in top]
    return ";".join(f"{c.name}={c.probability:.{DECIMALS}f}" for c in top)


def _blank_row(file: str, kind: str, sha: str | None, fmt: str) -> dict[str, Any]:
    row = {c: _empty(fmt) for c in COLUMNS}
    row.update(file=file, kind=kind, sha256=sha if sha else _empty(fmt))
    return row


def _index(i: int | None, fmt: str) -> Any:
    if i is None:
        return _empty(fmt)
    return str(i) if fmt == "csv" else i


def _verdict_fields(v: FacePrediction | VideoVerdict, fmt: str) -> dict[str, Any]:
    """The columns a face row and a video row share."""
    return {  # empty where the model lacks the expert (absent_experts_note says which)
        "verdict": _empty(fmt) if v.verdict is None else v.verdict,
        "p_fake": _num(v.p_fake, fmt),
        "generator": _empty(fmt) if v.attribution is None else v.attribution,
        "generator_probability": _num(v.generator_probability, fmt),
        "unknown": _empty(fmt) if v.unknown is None else _flag(v.unknown, fmt),
        "top3": _top3(v.top, fmt),
    }


def _face_row(file: str, kind: str, sha: str | None, p: FacePrediction, fmt: str) -> dict[str, Any]:
    row = _blank_row(file, kind, sha, fmt)
    row.update(_verdict_fields(p, fmt))
    row.update(
        frame=_index(p.frame_index, fmt),
        face=_index(p.face_index, fmt),
        gaze_pitch=_num(p.gaze_pitch, fmt),
        gaze_yaw=_num(p.gaze_yaw, fmt),
        face_box=_box(p.box, fmt),
    )
    return row


def result_rows(result: InputResult, fmt: str, file: str | None = None) -> list[dict[str, Any]]:
    """The output rows of one file's result, in order (see ``docs/INFERENCE.md``)."""
    file = file if file is not None else result.path
    if result.error is not None:
        row = _blank_row(file, result.kind, result.sha256, fmt)
        row["error"] = result.error
        return [row]
    face_kind = "frame" if result.kind == "video" else "image"
    entries: list[tuple[tuple[int, int], dict[str, Any]]] = []
    for p in result.faces:
        entries.append(
            ((p.frame_index or 0, p.face_index), _face_row(file, face_kind, result.sha256, p, fmt))
        )
    for f in result.face_failures:
        row = _blank_row(file, face_kind, result.sha256, fmt)
        row.update(
            frame=_index(f.frame_index, fmt), face=_index(f.face_index, fmt), face_box=_box(f.box, fmt)
        )
        row["error"] = f.error
        entries.append(((f.frame_index or 0, f.face_index), row))
    rows = [r for _, r in sorted(entries, key=lambda e: e[0])]
    if result.video is not None:
        row = _blank_row(file, "video", result.sha256, fmt)
        row.update(_verdict_fields(result.video, fmt))
        rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]], fmt: str) -> str:
    """Rows as the text appended to the output (each row one line ending in a newline)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for r in rows:
        writer.writerow([r[c] for c in COLUMNS])
    return buf.getvalue()


def _header(fmt: str) -> str:
    return format_rows([{c: c for c in COLUMNS}], "csv") if fmt == "csv" else ""


# Summary


@dataclass
class ScanSummary:
    """Counts over the whole output file (earlier runs included when resuming)."""

    out: str
    format: str
    files: int = 0  # files with rows in the output
    files_this_run: int = 0  # files scanned by this run
    files_skipped: int = 0  # files already in the output (resume)
    files_failed: int = 0  # files that could not be scored at all
    faces: int = 0  # faces scored in still images
    videos: int = 0  # videos scored
    face_errors: int = 0  # faces found that could not be prepared
    ignored: int = 0  # files without an image or video extension (this run)
    verdicts: dict[str, int] = field(default_factory=dict)  # over image faces and videos
    generators: dict[str, int] = field(default_factory=dict)  # attribution over image faces and videos
    failures: dict[str, int] = field(default_factory=dict)  # reason -> files (and faces) failing for it
    seconds: float = 0.0  # wall time of this run

    @property
    def fakes(self) -> int:
        return self.verdicts.get("fake", 0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def failure_category(reason: str) -> str:
    """A reason shortened to its cause, for grouping: up to the first '(' or ';'."""
    for sep in (" (", ";"):
        reason = reason.split(sep, 1)[0]
    return reason.strip()


class _Tally:
    """Accumulates a summary row by row (used for new rows and for rows read back on resume)."""

    def __init__(self) -> None:
        self.verdicts: Counter[str] = Counter()
        self.generators: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.files = self.failed = self.faces = self.videos = self.face_errors = 0

    def add_file(self, rows: list[dict[str, Any]]) -> None:
        self.files += 1
        for r in rows:
            error, kind, face = r.get("error"), r.get("kind"), r.get("face")
            if error:
                self.failures[failure_category(error_reason(error, r["file"]))] += 1
                if face in ("", None):
                    self.failed += 1
                else:
                    self.face_errors += 1
                continue
            if kind == "image" or kind == "video":
                self.faces += kind == "image"
                self.videos += kind == "video"
                if r["verdict"]:  # empty without a detection expert
                    self.verdicts[r["verdict"]] += 1
                if r["generator"]:  # empty without an attribution expert
                    self.generators[r["generator"]] += 1

    def into(self, summary: ScanSummary) -> None:
        summary.files, summary.files_failed = self.files, self.failed
        summary.faces, summary.videos, summary.face_errors = self.faces, self.videos, self.face_errors
        summary.verdicts = dict(sorted(self.verdicts.items()))
        summary.generators = dict(sorted(self.generators.items(), key=lambda kv: (-kv[1], kv[0])))
        summary.failures = dict(sorted(self.failures.items(), key=lambda kv: (-kv[1], kv[0])))


# Resume


def _parse_line(line: bytes, fmt: str) -> dict[str, Any] | None:
    try:
        text = line.decode("utf-8")
        if fmt == "jsonl":
            row = json.loads(text)
            return row if isinstance(row, dict) and set(COLUMNS) <= set(row) else None
        values = next(csv.reader([text]))
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error, StopIteration):
        return None
    return dict(zip(COLUMNS, values, strict=True)) if len(values) == len(COLUMNS) else None


def _read_done(out: Path, fmt: str, tally: _Tally) -> tuple[set[str], int]:
    """Files complete in an existing output, and the byte offset to cut it at.

    The last file's rows are cut off (its set of rows may be incomplete), and with them a
    partial last line. Any other unreadable line means the file is not a scan output.
    """
    done: set[str] = set()
    header = _header(fmt).encode("utf-8")
    with open(out, "rb") as fh:
        first = fh.readline() if header else b""
        if header and first != header:
            if not first.endswith(b"\n") and header.startswith(first):
                return done, 0  # killed while writing the header
            raise DataError(
                f"{out}: not a gazeclip scan output (its header differs); choose another --out or remove it"
            )
        offset = len(first)
        group_file: str | None = None
        group_start = offset
        group_rows: list[dict[str, Any]] = []
        lines = iter(fh)
        line = next(lines, None)
        while line is not None:
            following = next(lines, None)
            row = _parse_line(line, fmt) if line.endswith(b"\n") else None
            if row is None:
                if following is not None:
                    raise DataError(
                        f"{out}: line at byte {offset} is not a scan row; the file was edited or is not a scan output"
                    )
                break  # a partial last line, left by a killed scan: cut here
            if row["file"] != group_file:
                if group_file is not None:
                    done.add(group_file)
                    tally.add_file(group_rows)
                group_file, group_start, group_rows = row["file"], offset, []
            group_rows.append(row)
            offset += len(line)
            line = following
    # The last group is cut off and scanned again: it may be short of rows.
    return done, group_start if group_file is not None else offset


# The scan


@dataclass(frozen=True)
class ScanProgress:
    """Reported after each file is written or skipped."""

    files_done: int  # written by this run
    files_skipped: int  # already in the output
    faces: int  # image faces and videos scored by this run
    fakes: int  # of which fake
    failed: int  # files that could not be scored, this run
    current: str  # the file just handled (printable)


ProgressCallback = Callable[[ScanProgress], None]


def output_format(out: str | os.PathLike[str]) -> str:
    """``csv`` or ``jsonl`` from the output file's suffix.

    Raises:
        ConfigError: any other suffix.
    """
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"--out {out}: use a .csv or .jsonl file name")
    return FORMATS[suffix]


def check_output(out: str | os.PathLike[str], resume: bool) -> str:
    """Check the results file before any work (a CLI calls it before loading the model); its format.

    Raises:
        ConfigError: not a ``.csv`` or ``.jsonl`` name.
        DataError: it exists without ``resume``, or its folder does not exist.
    """
    out = Path(out)
    fmt = output_format(out)
    if out.exists() and out.stat().st_size > 0 and not resume:
        raise DataError(
            f"{out}: already exists; pass --resume to continue that scan, or choose another --out"
        )
    if not out.parent.is_dir():
        raise DataError(f"{out.parent}: output folder does not exist; create it first")
    return fmt


def provenance_path(out: str | os.PathLike[str]) -> Path:
    """Where the scan's provenance file sits: ``<out>.provenance.json``."""
    out = Path(out)
    return out.with_name(out.name + ".provenance.json")


# Settings that change rows: a resumed scan must use the same ones (the batch size too: the
# network's float sums depend on the batch shape, so another size moves scores in the 6th decimal).
_RESUME_KEYS = ("threshold", "faces", "face_mode", "video_frames", "top_k", "batch_size", "runtime")
KILLED = "killed: the run recorded no end (found when the scan was resumed); last write to the output at"


def _write_provenance(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _start_provenance(
    predictor: Predictor, out: Path, resuming: bool, engine: dict[str, Any]
) -> dict[str, Any]:
    path = provenance_path(out)
    run = {
        "started": utc_now(),
        "tool_version": predictor.provenance().tool_version,
        "resumed": resuming,
        "engine": engine,
    }
    if resuming and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            first = data["provenance"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{path}: unreadable provenance of the scan being resumed ({exc})") from None
        before = first.get("model", {}).get("weights_sha256")
        if before != predictor.model_provenance.weights_sha256:
            raise ConfigError(
                f"{out}: was started with another model (weights SHA-256 {str(before)[:12]}...); resume with the "
                "same --model, or choose another --out"
            )
        now = predictor.settings.as_dict()
        # Scans started before the runtime was recorded ran torch.
        then = {"runtime": "torch", **first.get("settings", {})}
        changed = [k for k in _RESUME_KEYS if then.get(k) != now[k]]
        if changed:
            was = ", ".join(f"{k}={then.get(k)!r}" for k in changed)
            asked = ", ".join(f"{k}={now[k]!r}" for k in changed)
            raise ConfigError(
                f"{out}: was started with {was}, resumed with {asked}; resume with the same settings, "
                "or choose another --out"
            )
        runs = data.setdefault("runs", [])
        if runs and "finished" not in runs[-1] and "stopped" not in runs[-1]:
            # Nothing ran at its end: the process was killed (SIGKILL, power, out of memory).
            last_write = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(out.stat().st_mtime))
            runs[-1]["stopped"] = {"how": "killed", "at": last_write, "detail": f"{KILLED} {last_write}"}
        runs.append(run)
    else:
        provenance = predictor.provenance({"output": str(out)}).as_dict()
        # Where the model ran: this process's device, or the engine's workers'.
        provenance["device"] = engine.get("device", provenance["device"])
        data = {"provenance": provenance, "runs": [run]}
    _write_provenance(path, data)
    return data


@dataclass
class _Pending:
    """A file between stage 1 and its rows: waiting for its faces' predictions."""

    prepared: PreparedInput
    predictions: list[FacePrediction | None]
    missing: int


def default_workers() -> int:
    """Worker threads when none are asked for: the usable CPU cores, at most 8."""
    return max(1, min(8, usable_cores()))


@dataclass(frozen=True)
class ScanTask:
    """One file of the walk for an engine to score."""

    position: int  # index in the walk (every item counted, files already in the output too)
    item: ScanItem
    # Already in the output: scored again only so that its walk group's batches are the first
    # run's (a resume), its result is not written.
    replay: bool = False


ResultSink = Callable[[InputResult], None]


class ScanEngine(Protocol):
    """What turns the walk's files into results: this process's threads, or a Ray cluster.

    :func:`scan` calls ``start``, then ``run`` (which hands every task's result to ``emit``,
    one per task, in walk order), and ``stop`` in the end, also after an error. Batches never
    span two walk groups (``position // batch_size``), so a resume, whose first tasks replay
    the already written files of its group, scores every face in the same batch as before.
    """

    def start(self, predictor: Predictor) -> dict[str, Any]:
        """Get ready; returns what the provenance records of the engine (its ``name`` first)."""
        ...

    def run(self, tasks: Iterable[ScanTask], emit: ResultSink) -> None:
        """Score every task, handing the results to ``emit`` in walk order."""
        ...

    def stop(self) -> None:
        """Release what ``start`` took."""
        ...


def prepare_item(preparer: Predictor | InputPreparer, item: ScanItem) -> PreparedInput:
    """Stage 1 of one walk item: a path the walk could not use becomes its error, a file is prepared."""
    if item.error is not None:
        return PreparedInput(path=display_path(item.path), kind=item.kind, sha256=None, error=item.error)
    return preparer.prepare(item.path)


def scan(
    predictor: Predictor,
    roots: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    workers: int | None = None,
    model_threads: int | None = None,
    progress: ProgressCallback | None = None,
    engine: ScanEngine | None = None,
) -> ScanSummary:
    """Scan folders and files, appending one row per face to ``out`` (CSV or JSONL).

    Args:
        predictor: the model, detector and settings (batch size, threshold, faces, ...).
        roots: folders (walked recursively) and files.
        out: the ``.csv`` or ``.jsonl`` output; must not exist unless ``resume``.
        resume: continue a scan whose output exists (see the module docstring), whichever
            engine wrote it.
        workers: the local engine's threads preparing files and, on a CPU, running the
            model's batches (0: everything in the calling thread; None: :func:`default_workers`).
        model_threads: the local engine's intra-op threads of each forward: of every worker
            thread on a CPU, of the calling thread otherwise (restored after). None: the usable
            cores divided among the workers (at least 1) on a CPU; torch's setting on CUDA.
        progress: called after each file; an exception it raises stops the scan with the
            output intact (rows of finished files written and flushed).
        engine: what scores the files; None: :class:`LocalEngine` with ``workers`` and
            ``model_threads`` (the Ray engine: ``scan_ray.RayScanEngine``).

    Returns:
        The summary of the whole output.

    Raises:
        ConfigError: bad output name, or resuming with another model or settings.
        DataError: the output exists (without ``resume``) or is not a scan output.
    """
    start = time.perf_counter()
    out = Path(out)
    fmt = check_output(out, resume)
    if engine is None:
        engine = LocalEngine(workers, model_threads)
    elif workers is not None or model_threads is not None:
        raise ConfigError("workers and model threads size the local engine; the engine given sizes itself")
    tally = _Tally()
    done: set[str] = set()
    exists = out.exists() and out.stat().st_size > 0
    summary = ScanSummary(out=str(out), format=fmt)
    stats = WalkStats()
    new = {"done": 0, "skipped": 0, "faces": 0, "fakes": 0, "failed": 0}
    batch = predictor.settings.batch_size
    replays: deque[bool] = deque()  # of the tasks handed out and not yet emitted, in walk order
    started = False
    try:
        described = engine.start(predictor)
        if exists:
            done, cut = _read_done(out, fmt, tally)
            with open(out, "r+b") as fh:
                fh.truncate(cut)
        _start_provenance(predictor, out, resuming=exists, engine=described)
        started = True
        with open(out, "a", encoding="utf-8", newline="") as fh:
            if fh.tell() == 0 and fmt == "csv":
                fh.write(_header(fmt))
                fh.flush()

            def emit(result: InputResult) -> None:
                if replays.popleft():
                    return  # its rows are in the output already
                file = printable_path_of(result)
                rows = result_rows(result, fmt, file)
                fh.write(format_rows(rows, fmt))
                fh.flush()
                tally.add_file(rows)
                new["done"] += 1
                new["failed"] += result.error is not None
                scored = [r for r in rows if not r["error"] and r["kind"] in ("image", "video")]
                new["faces"] += len(scored)
                new["fakes"] += sum(r["verdict"] == "fake" for r in scored)
                if progress is not None:
                    progress(
                        ScanProgress(
                            new["done"], new["skipped"], new["faces"], new["fakes"], new["failed"], file
                        )
                    )

            def handed(task: ScanTask) -> ScanTask:
                replays.append(task.replay)
                return task

            def tasks() -> Iterator[ScanTask]:
                # Files already in the output in the walk group being passed: when a file to scan
                # follows them in the same group, they are handed out again as replays.
                held: list[ScanTask] = []
                for position, item in enumerate(iter_inputs(roots, stats)):
                    key = printable_path(item.path)
                    if key in done:
                        if held and held[0].position // batch != position // batch:
                            held.clear()
                        held.append(ScanTask(position, item, replay=True))
                        new["skipped"] += 1
                        if progress is not None:
                            progress(
                                ScanProgress(
                                    new["done"],
                                    new["skipped"],
                                    new["faces"],
                                    new["fakes"],
                                    new["failed"],
                                    key,
                                )
                            )
                        continue
                    for task in held:
                        if task.position // batch == position // batch:
                            yield handed(task)
                    held.clear()
                    yield handed(ScanTask(position, item))

            engine.run(tasks(), emit)
    except BaseException as exc:
        if started:
            _stop_provenance(out, exc, new["done"])
        raise
    finally:
        engine.stop()

    tally.into(summary)
    summary.files_this_run = new["done"]
    summary.files_skipped = new["skipped"]
    summary.ignored = stats.ignored
    summary.seconds = time.perf_counter() - start
    _finish_provenance(out, summary)
    return summary


class LocalEngine:
    """The embedded engine: threads of this process (the pipeline of the module docstring).

    Args:
        workers: threads preparing files and, on a CPU, running the model's batches (0: all
            in the calling thread; None: :func:`default_workers`).
        model_threads: intra-op threads of each forward (None: see :func:`scan`).

    Raises:
        ConfigError: negative workers, or model threads below 1.
    """

    name = "local"

    def __init__(self, workers: int | None = None, model_threads: int | None = None) -> None:
        workers = default_workers() if workers is None else workers
        if workers < 0:
            raise ConfigError(f"workers {workers}: must be 0 or more")
        if model_threads is not None and model_threads < 1:
            raise ConfigError(f"model threads {model_threads}: must be at least 1")
        self.workers = workers
        self.model_threads = model_threads
        self.predictor: Predictor | None = None

    def start(self, predictor: Predictor) -> dict[str, Any]:
        self.predictor = predictor
        if self.model_threads is None and predictor.device.type == "cpu":
            self.model_threads = max(1, usable_cores() // max(1, self.workers))
        return {"name": self.name, "workers": self.workers, "model_threads": self.model_threads}

    def run(self, tasks: Iterable[ScanTask], emit: ResultSink) -> None:
        assert self.predictor is not None, "start() first"
        _scan_local(self.predictor, tasks, emit, self.workers, self.model_threads)

    def stop(self) -> None:
        self.predictor = None


def _scan_local(
    predictor: Predictor,
    tasks: Iterable[ScanTask],
    sink: ResultSink,
    workers: int,
    model_threads: int | None,
) -> None:
    on_cpu = predictor.device.type == "cpu"
    lanes = workers > 0 and on_cpu  # worker threads run the model's batches too
    batch = predictor.settings.batch_size
    in_flight = batch + 2 * workers
    executor = (
        ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="gazeclip-scan",
            # Intra-op threads are per thread with OpenMP: set in each worker for its forwards.
            initializer=torch.set_num_threads if lanes else None,
            initargs=(model_threads,) if lanes else (),
        )
        if workers
        else None
    )
    window: deque[tuple[Future[PreparedInput] | PreparedInput, int]] = deque()  # with walk positions
    files: deque[_Pending] = deque()
    faces: deque[tuple[_Pending, int, PreparedFace]] = deque()
    batches: deque[tuple[list[_Pending], list[int], Future[list[FacePrediction]]]] = deque()

    switch_interval = sys.getswitchinterval()
    torch_threads = torch.get_num_threads()
    cv2_threads = cv2.getNumThreads()
    if lanes:
        # OpenCV's pool is process-wide: the preparing warps and resizes get the same per-worker
        # budget as the forwards, so the workers do not each start a team on every core.
        cv2.setNumThreads(model_threads)
    if model_threads is not None and not lanes:
        torch.set_num_threads(model_threads)
    if executor is not None:
        # The model's forward is many short Python steps between native kernels; with the default
        # 5 ms switch interval each hand-back of the GIL from a preparing thread can stall a model
        # running in the calling thread (CUDA) for up to 5 ms. A shorter interval for the scan's
        # duration keeps it fed (restored below).
        sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL_S))
    try:

        def emit(pending: _Pending) -> None:
            sink(predictor.result(pending.prepared, [p for p in pending.predictions if p is not None]))

        def emit_ready() -> None:
            while files and files[0].missing == 0:
                emit(files.popleft())

        def finish_batch(owners: list[_Pending], slots: list[int], preds: list[FacePrediction]) -> None:
            for pending, slot, pred in zip(owners, slots, preds, strict=True):
                pending.predictions[slot] = pred
                pending.missing -= 1
            emit_ready()

        def finish_batches(keep: int) -> None:
            # Oldest first, so files are written in walk order; waits while more than ``keep`` are out.
            while batches and (len(batches) > keep or batches[0][2].done()):
                owners, slots, future = batches.popleft()
                finish_batch(owners, slots, future.result())

        def run_batch(n: int) -> None:
            chunk = [faces.popleft() for _ in range(n)]
            owners, slots, items = [c[0] for c in chunk], [c[1] for c in chunk], [c[2] for c in chunk]
            if lanes:
                batches.append((owners, slots, executor.submit(predictor.predict_faces, items)))  # type: ignore[union-attr]
                finish_batches(keep=workers)
            else:
                finish_batch(owners, slots, predictor.predict_faces(items))

        group = [0]  # the walk group (position // batch) whose faces are being batched

        def accept(prepared: PreparedInput, position: int) -> None:
            if position // batch != group[0]:
                # Batches never span two groups of ``batch`` walk positions: a resume, which
                # starts again at its group's first file, re-forms exactly the same batches.
                while faces:
                    run_batch(min(batch, len(faces)))
                group[0] = position // batch
            pending = _Pending(prepared, [None] * len(prepared.faces), len(prepared.faces))
            files.append(pending)
            for slot, face in enumerate(prepared.faces):
                faces.append((pending, slot, face))
            while len(faces) >= batch:
                run_batch(batch)
            finish_batches(keep=workers)
            emit_ready()

        for task in tasks:
            if executor is not None:
                window.append((executor.submit(prepare_item, predictor, task.item), task.position))
            else:
                window.append((prepare_item(predictor, task.item), task.position))
            while len(window) > in_flight or (executor is None and window):
                accept(*_take(window.popleft()))
        while window:
            accept(*_take(window.popleft()))
        while faces:
            run_batch(min(batch, len(faces)))
        finish_batches(keep=0)
        emit_ready()
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        sys.setswitchinterval(switch_interval)
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)


def printable_path_of(prepared: PreparedInput | InputResult) -> str:
    """The ``file`` value of a file's rows (its path is already display text)."""
    return _escape_controls(prepared.path)


def _take(entry: tuple[Future[PreparedInput] | PreparedInput, int]) -> tuple[PreparedInput, int]:
    item, position = entry
    return (item.result() if isinstance(item, Future) else item), position


def _stop_provenance(out: Path, exc: BaseException, files_scanned: int) -> None:
    """Record in the run's entry when and how it stopped before its end."""
    if isinstance(exc, KeyboardInterrupt):
        how, detail = "interrupted", "interrupted (Ctrl-C)"
    else:
        how, detail = "error", f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
    path = provenance_path(out)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["runs"][-1].update(
            stopped={"how": how, "at": utc_now(), "detail": detail}, files_scanned=files_scanned
        )
        _write_provenance(path, data)
    except (OSError, ValueError, KeyError, IndexError):
        pass  # the original exception is what the user must see; a kill is still detected on resume


def _finish_provenance(out: Path, summary: ScanSummary) -> None:
    path = provenance_path(out)
    data = json.loads(path.read_text(encoding="utf-8"))
    run = data["runs"][-1]
    run.update(finished=utc_now(), files_scanned=summary.files_this_run, files_skipped=summary.files_skipped)
    data["summary"] = summary.as_dict()
    _write_provenance(path, data)
