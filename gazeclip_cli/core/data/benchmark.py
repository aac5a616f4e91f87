"""Sampling the protocol's counts from what discovery found, deterministically, and checking each file taken.

For each generator the candidates are grouped by source video (a still image is a group
of one), the groups are shuffled with ``random.Random(f"{seed}/{generator}")`` and whole
groups are taken for test first, then val, then train, so the frames of one video never
fall on both sides of a split and the test sets are filled first when data is short. A
generator's sample depends only on the seed, its own name and its own files: adding a
generator to the protocol does not change the others.

Files are checked as they are taken, cheaply (16 bytes read, nothing decoded): the file
must open, be non-empty and start with a known image (or video) signature; a video must
also report its frame count. A file that fails is reported by name and the sampler moves
on. ``verify_decode`` decodes every image taken (and reads the chosen video frames), which
also catches files cut short after a valid header; ``check_all`` checks every file found,
so "usable" counts the whole dataset. The cheap check costs a few system calls per sample
taken: its cost follows the protocol's counts, not the size of the dataset.
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import itertools
import operator
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gazeclip_cli import __version__
from gazeclip_cli.core.data.discovery import (
    Found,
    Problem,
    ProgressFn,
    VideoGroup,
    discover,
    frame_number,
    printable,
)
from gazeclip_cli.core.data.frame_sampling import evenly_spaced
from gazeclip_cli.core.data.manifest import ManifestRow, summary_path, write_manifest, write_summary
from gazeclip_cli.core.data.protocol import SPLITS, GeneratorSpec, Protocol
from gazeclip_cli.core.errors import DataError

_by_path = operator.itemgetter(0)
# Splits are filled in this order: test sets first, so they stay complete when data is short.
FILL_ORDER = ("test", "val", "train")
# Problems that mean a generator split got fewer samples than wanted.
SHORTFALL_CATEGORIES = ("no_root", "not_found", "no_media", "short")


@dataclass
class GeneratorReport:
    """The Table I view of one generator: wanted, found, usable, selected."""

    name: str
    source: str
    role: str
    dfd_label: int
    dfa_label: int
    kind: str  # "images", "frames" or "videos"
    folders: list[str]
    wanted: dict[str, int]  # rows wanted per split
    found_files: int  # media files found (images, frames or video files)
    found_videos: int  # video groups found (0 for still images)
    checked: int  # files (or videos) whose readability was checked
    unusable: int  # of those, how many failed
    selected: dict[str, int]  # rows written per split
    excluded_by_label: int = 0
    test_list: str = ""
    label_files: list[str] = field(default_factory=list)
    json_files: list[str] = field(default_factory=list)
    problem_counts: dict[str, int] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        """What ``found_files``/``usable`` count: "videos" for video files, else "files"."""
        return "videos" if self.kind == "videos" else "files"

    @property
    def usable(self) -> int:
        """Found minus the files known to fail the checks (all files are known only with ``check_all``)."""
        return self.found_files - self.unusable

    @property
    def short(self) -> dict[str, int]:
        return {s: self.wanted[s] - self.selected[s] for s in SPLITS if self.selected[s] < self.wanted[s]}

    @property
    def total_wanted(self) -> int:
        return sum(self.wanted.values())

    @property
    def total_selected(self) -> int:
        return sum(self.selected.values())


@dataclass(frozen=True)
class DuplicateGroup:
    """Files with identical content among the selected samples."""

    sha256: str
    paths: tuple[str, ...]
    splits: tuple[str, ...]  # the splits these files were put in

    @property
    def cross_split(self) -> bool:
        return len(set(self.splits)) > 1


@dataclass
class BenchmarkResult:
    """Everything ``build-benchmark`` decided; :func:`write_benchmark` stores it."""

    protocol: Protocol
    seed: int
    roots: dict[str, str]
    options: dict[str, Any]
    rows: list[ManifestRow]  # absolute paths, in manifest order
    reports: list[GeneratorReport]
    problems: list[Problem]
    duplicates: list[DuplicateGroup] | None  # None unless dedupe was asked

    @property
    def has_shortfall(self) -> bool:
        return any(r.short for r in self.reports)

    def shortfall_message(self, limit: int = 5) -> str:
        """One line naming the generators that got fewer samples than wanted (the first ``limit``)."""
        short = [r for r in self.reports if r.short]
        if not short:
            return "no shortfall"
        parts = [
            f"{r.name} ({', '.join(f'{s} {r.selected[s]:,}/{r.wanted[s]:,}' for s in r.short)})"
            for r in short[:limit]
        ]
        more = f" and {len(short) - limit} more" if len(short) > limit else ""
        return f"{len(short)} set(s) short of the protocol: " + "; ".join(parts) + more

    def problem_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.problems:
            counts[p.category] = counts.get(p.category, 0) + 1
        return counts

    def split_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SPLITS, 0)
        for r in self.rows:
            counts[r.split] += 1
        return counts


def build_benchmark(
    protocol: Protocol,
    roots: Mapping[str, str],
    *,
    seed: int | None = None,
    generators: Sequence[str] | None = None,
    strict: bool = False,
    dedupe: bool = False,
    verify_decode: bool = False,
    check_all: bool = False,
    deepfakebench_json: Sequence[str | Path] = (),
    json_base: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> BenchmarkResult:
    """Discover the protocol's generators under ``roots`` and sample its counts.

    Args:
        protocol: the validated protocol (:func:`~gazeclip_cli.core.data.protocol.load_protocol`).
        roots: ``{source name: folder}`` (:func:`~gazeclip_cli.core.data.discovery.parse_roots`).
        seed: overrides the protocol's seed.
        generators: build only these generators or groups (default: the whole protocol).
        strict: raise :class:`DataError` when any generator split is short.
        dedupe: hash the selected files and report identical content (across splits above all).
        verify_decode: fully decode every selected image (and read the chosen video frames).
        check_all: check every file found, not only the ones the sampler takes.
        deepfakebench_json: DeepfakeBench dataset JSON files to read as well.
        json_base: folder relative paths in the JSON files are relative to.
        progress: called as ``progress(message, done, total)``.

    Returns:
        The :class:`BenchmarkResult` (nothing is written; see :func:`write_benchmark`).

    Raises:
        DataError: with ``strict``, when a generator split is short; the message lists them.
    """
    # Listing and sampling make tens of thousands of small containers and no reference
    # cycles; with the collector paused they cost no collections (in the CLI a full
    # collection walks every object torch and open_clip left in the process).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        result = _build(
            protocol,
            roots,
            protocol.seed if seed is None else seed,
            generators,
            strict,
            dedupe,
            verify_decode,
            check_all,
            deepfakebench_json,
            json_base,
            progress,
        )
    finally:
        if gc_was_enabled:
            gc.enable()
    if strict and result.has_shortfall:
        raise DataError(f"strict mode: {result.shortfall_message()}")
    return result


def _build(
    protocol: Protocol,
    roots: Mapping[str, str],
    seed: int,
    generators: Sequence[str] | None,
    strict: bool,
    dedupe: bool,
    verify_decode: bool,
    check_all: bool,
    deepfakebench_json: Sequence[str | Path],
    json_base: str | Path | None,
    progress: ProgressFn | None,
) -> BenchmarkResult:
    specs = protocol.select(generators) if generators else list(protocol.generators)
    found, general_problems = discover(protocol, roots, specs, deepfakebench_json, json_base, progress)

    rows: list[ManifestRow] = []
    reports: list[GeneratorReport] = []
    problems: list[Problem] = list(general_problems)
    for i, f in enumerate(found):
        if progress is not None:
            progress(f"sampling {f.generator.name}", i, len(found))
        checker = _Checker(f.generator.name, verify_decode)
        if check_all:
            checker.check_everything(f)
        selected = _sample(f, seed, checker)
        report = _report(f, checker, selected)
        # Sorted by path: folders list in file-system order, the report must not.
        gen_problems = sorted(f.problems + checker.problems, key=lambda p: (p.path, p.category, p.detail))
        if report.short:
            detail = ", ".join(f"{s} {report.selected[s]:,} of {report.wanted[s]:,}" for s in report.short)
            gen_problems.append(
                Problem(
                    "short",
                    f.generator.name,
                    f.folders[0] if f.folders else "",
                    f"fewer than wanted: {detail}",
                )
            )
        for p in gen_problems:
            report.problem_counts[p.category] = report.problem_counts.get(p.category, 0) + 1
        problems.extend(gen_problems)
        reports.append(report)
        for split in SPLITS:
            if f.kind == "images":
                rows.extend(selected[split])  # already in found (sorted path) order
            else:
                # Sorted by path; the sort is stable and the frames of one video file were
                # taken in frame order, so rows come out in (path, frame_index) order.
                rows.extend(sorted(selected[split], key=_by_path))
    if progress is not None:
        progress("sampling done", len(found), len(found))

    duplicates = _find_duplicates(rows, progress) if dedupe else None
    if duplicates:
        for d in duplicates:
            problems.append(
                Problem(
                    "duplicate_across_splits" if d.cross_split else "duplicate",
                    "",
                    " | ".join(d.paths),
                    f"identical content (sha256 {d.sha256[:12]}) in splits {', '.join(sorted(set(d.splits)))}",
                )
            )

    return BenchmarkResult(
        protocol=protocol,
        seed=seed,
        roots=dict(roots),
        options={
            "generators": list(generators) if generators else None,
            "strict": strict,
            "dedupe": dedupe,
            "verify_decode": verify_decode,
            "check_all": check_all,
            "deepfakebench_json": [os.path.abspath(p) for p in deepfakebench_json],
            "json_base": os.path.abspath(json_base) if json_base is not None else None,
        },
        rows=rows,
        reports=reports,
        problems=problems,
        duplicates=duplicates,
    )


def write_benchmark(result: BenchmarkResult, out: str | Path) -> tuple[Path, Path]:
    """Write the manifest CSV and its summary JSON.

    Args:
        result: what :func:`build_benchmark` returned.
        out: the manifest path, e.g. ``bench/manifest.csv``; the summary goes beside it.

    Returns:
        ``(manifest path, summary path)``.
    """
    out = Path(os.path.abspath(out))
    if out.suffix.lower() != ".csv":
        raise DataError(f"{out}: the manifest is a CSV file; give a path ending in .csv")
    digest = write_manifest(out, result.rows)
    summary = summary_dict(result, out, digest)
    spath = summary_path(out)
    write_summary(spath, summary)
    return out, spath


def summary_dict(result: BenchmarkResult, manifest: Path, manifest_sha256: str) -> dict[str, Any]:
    """The summary JSON content (deterministic: no timestamps)."""
    p = result.protocol
    return {
        "format": "gazeclip-benchmark-summary",
        "version": 1,
        "gazeclip_version": __version__,
        "protocol": {"name": p.name, "path": os.path.abspath(p.path) if p.path else "", "sha256": p.sha256},
        "seed": result.seed,
        "roots": {k: printable(v) for k, v in result.roots.items()},
        "options": result.options,
        "manifest": {"path": manifest.name, "rows": len(result.rows), "sha256": manifest_sha256},
        "splits": result.split_counts(),
        "generators": [
            {
                "name": r.name,
                "source": r.source,
                "role": r.role,
                "dfd_label": r.dfd_label,
                "dfa_label": r.dfa_label,
                "kind": r.kind,
                "folders": [printable(f) for f in r.folders],
                "wanted": r.wanted,
                "found": {"files": r.found_files, "videos": r.found_videos},
                "checked": r.checked,
                "unusable": r.unusable,
                "usable": r.usable,
                "selected": r.selected,
                "short": r.short,
                "excluded_by_label": r.excluded_by_label,
                "test_list": r.test_list,
                "label_files": r.label_files,
                "json_files": r.json_files,
                "problems": r.problem_counts,
            }
            for r in result.reports
        ],
        "problem_counts": result.problem_counts(),
        "problems": [
            {"category": q.category, "generator": q.generator, "path": printable(q.path), "detail": q.detail}
            for q in result.problems
        ],
        "duplicates": None
        if result.duplicates is None
        else [
            {"sha256": d.sha256, "paths": list(d.paths), "splits": list(d.splits)} for d in result.duplicates
        ],
    }


# --------------------------------------------------------------------------- sampling


def _sample(found: Found, seed: int, checker: _Checker) -> dict[str, list[ManifestRow]]:
    spec = found.generator
    wanted = spec.wanted()
    selected: dict[str, list[ManifestRow]] = {s: [] for s in SPLITS}
    rng = random.Random(f"{seed}/{spec.name}")

    if found.kind == "images":
        # A Fisher-Yates shuffle of positions done one draw at a time: taking k of n images
        # costs O(k). Position p is name p - start[c] of chunk c; rows are made at the end in
        # position order, which is sorted tree order.
        chunks = found.image_chunks
        starts = list(itertools.accumulate((len(names) for _, names in chunks), initial=0))
        n = starts.pop()
        order = list(range(n))
        i = 0
        draw, ok, new_row, locate = rng.random, checker.images_ok, tuple.__new__, bisect.bisect_right
        for split in FILL_ORDER:
            taken: list[tuple[int, str]] = []
            want = wanted[split]
            while len(taken) < want and i < n:
                # Draw as many as still wanted, check them together, draw again for failures:
                # the same draws as one at a time, with less overhead per file.
                batch: list[tuple[int, str]] = []
                for _ in range(min(want - len(taken), n - i)):
                    j = i + int(draw() * (n - i))
                    pos = order[j]
                    order[j] = order[i]
                    i += 1
                    c = locate(starts, pos) - 1
                    prefix, names = chunks[c]
                    batch.append((pos, prefix + names[pos - starts[c]]))
                good = ok([path for _, path in batch])
                taken.extend(item for item, usable in zip(batch, good, strict=True) if usable)
            taken.sort()
            fields = _row(spec, "", split, "", None)[1:]
            selected[split] = [new_row(ManifestRow, (path, *fields)) for _, path in taken]
        return selected

    # With a test list, listed videos are the only test candidates and the others the only
    # train/val candidates; without one, all videos serve every split. A pool is consumed
    # front to back, so a video taken for one split is never offered to another.
    if any(g.in_test_list is not None for g in found.groups):
        pools = {
            "test": [g for g in found.groups if g.in_test_list],
            "train": [g for g in found.groups if not g.in_test_list],
        }
        pool_of = {"test": "test", "val": "train", "train": "train"}
    else:
        pools = {"all": list(found.groups)}
        pool_of = {"test": "all", "val": "all", "train": "all"}
    for key in sorted(pools):
        rng.shuffle(pools[key])
    position = dict.fromkeys(pools, 0)

    for split in FILL_ORDER:
        rows = selected[split]
        key = pool_of[split]
        pool = pools[key]
        while len(rows) < wanted[split] and position[key] < len(pool):
            group = pool[position[key]]
            position[key] += 1
            rows.extend(_take_group(spec, found.kind, group, wanted[split] - len(rows), split, checker))
    return selected


def _take_group(
    spec: GeneratorSpec, kind: str, group: VideoGroup, need: int, split: str, checker: _Checker
) -> list[ManifestRow]:
    """Up to ``need`` rows from one video: evenly spaced frames, each checked."""
    cap = spec.frames_per_video
    if kind == "videos":
        path = group.paths[0]
        n_frames = checker.video_frames(path)
        if n_frames is None:
            return []
        indices = evenly_spaced(n_frames, min(cap or n_frames, need))
        if checker.verify_decode and not checker.video_frames_decode(path, indices):
            return []
        return [_row(spec, path, split, group.video_id, i) for i in indices]

    frames = group.paths
    if len(frames) > 1:
        # Frame files in frame-number order (names alone would put 10.png before 2.png).
        numbered = [(frame_number(p), p) for p in frames]
        frames = [p for _, p in sorted(numbered, key=lambda t: (t[0] is None, t[0] or 0, t[1]))]
    rows = []
    for position in evenly_spaced(len(frames), min(cap or len(frames), need)):
        path = frames[position]
        if not checker.image_ok(path):
            continue
        if not group.video_id:
            rows.append(_row(spec, path, split, "", None))
        else:
            number = frame_number(path)
            rows.append(_row(spec, path, split, group.video_id, position if number is None else number))
    return rows


def _row(spec: GeneratorSpec, path: str, split: str, video_id: str, frame_index: int | None) -> ManifestRow:
    return ManifestRow(
        path,
        split,
        spec.dfd_label,
        spec.dfa_label,
        spec.name,
        spec.forgery_type,
        spec.architecture,
        spec.source,
        video_id,
        frame_index,
        spec.prompt_name,
    )


# --------------------------------------------------------------------------- checks

# First bytes of the image formats Pillow reads (MTCNN and the crops go through Pillow).
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_PNG, _JPEG = _IMAGE_SIGNATURES[0][0], _IMAGE_SIGNATURES[1][0]
_SIGNATURES_BY_START: dict[bytes, list[tuple[bytes, str]]] = {}
for _sig, _name in _IMAGE_SIGNATURES:
    _SIGNATURES_BY_START.setdefault(_sig[:2], []).append((_sig, _name))


def sniff_image(head: bytes) -> str | None:
    """The image format that ``head`` (a file's first bytes) starts with, or None."""
    if head[:8] == _PNG:  # nearly every dataset image is a PNG or a JPEG: test those first
        return "png"
    if head[:3] == _JPEG:
        return "jpeg"
    for signature, name in _SIGNATURES_BY_START.get(head[:2], ()):
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\r\n":
        return "pnm"
    return None


def sniff_video(head: bytes) -> str | None:
    """The video container that ``head`` starts with, or None."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "asf"
    if head[:3] == b"FLV":
        return "flv"
    return None


def check_image_file(path: str) -> tuple[str, str] | None:
    """Cheap readability check of an image file: ``None`` if usable, else ``(category, detail)``.

    Opens the file and reads its first 16 bytes: it must be non-empty and start with a known
    image signature. Nothing is decoded, so a file cut short after a valid header passes;
    ``verify_decode`` catches those.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return "unreadable", f"cannot open: {exc.strerror}"
    try:
        head = os.read(fd, 16)
    except IsADirectoryError:
        return "unreadable", "a folder named like an image file; its contents are not read"
    except OSError as exc:
        return "unreadable", f"cannot read: {exc.strerror}"
    finally:
        os.close(fd)
    if not head:
        return "empty_file", "0 bytes"
    if sniff_image(head) is None:
        return "unreadable", f"not an image (starts with {head[:8]!r})"
    return None


class _Checker:
    """Checks files as the sampler takes them, remembering results and problems."""

    def __init__(self, generator: str, verify_decode: bool) -> None:
        self.generator = generator
        self.verify_decode = verify_decode
        self.problems: list[Problem] = []
        self.checked = 0
        self.bad = 0
        self._known: dict[str, bool] | None = None  # results of check_everything
        self._frames: dict[str, int | None] = {}

    def _fail(self, path: str, category: str, detail: str) -> None:
        self.bad += 1
        self.problems.append(Problem(category, self.generator, path, detail))

    def image_ok(self, path: str) -> bool:
        """Whether an image passes the checks; a failure is recorded as a problem."""
        if self._known is not None:
            known = self._known.get(path)
            if known is not None:
                return known
        self.checked += 1
        if not path.isascii() and not _utf8(path):
            self._fail(
                path,
                "bad_name",
                "file name is not valid UTF-8 and cannot be written to the manifest; rename it",
            )
            return False
        failure = check_image_file(path)
        if failure is None and self.verify_decode:
            detail = _decode_image(path)
            if detail is not None:
                failure = ("unreadable", detail)
        if failure is not None:
            self._fail(path, *failure)
            return False
        return True

    def images_ok(self, paths: list[str]) -> list[bool]:
        """:meth:`image_ok` for many files, with a fast path for the usual PNG or JPEG.

        The fast path reads the same 16 bytes as :func:`check_image_file`; any file it does
        not pass outright (error, other format, odd name) goes through :meth:`image_ok`,
        which makes the decision and records the problem.
        """
        if self._known is not None or self.verify_decode:
            return [self.image_ok(p) for p in paths]
        out: list[bool] = []
        append, os_open, os_read, os_close, flags = out.append, os.open, os.read, os.close, os.O_RDONLY
        fast = 0
        for path in paths:
            try:
                fd = os_open(path, flags)
            except OSError:
                append(self.image_ok(path))
                continue
            try:
                head = os_read(fd, 16)
            except OSError:
                head = b""
            finally:
                os_close(fd)
            if (head[:8] == _PNG or head[:3] == _JPEG) and path.isascii():
                fast += 1
                append(True)
            else:
                append(self.image_ok(path))
        self.checked += fast
        return out

    def video_frames(self, path: str) -> int | None:
        """The frame count of a usable video, or None (reported) when it cannot be used."""
        if path in self._frames:
            return self._frames[path]
        self.checked += 1
        count = None
        if not _utf8(path):
            self._fail(
                path,
                "bad_name",
                "file name is not valid UTF-8 and cannot be written to the manifest; rename it",
            )
        else:
            failure, count = probe_video(path)
            if failure is not None:
                self._fail(path, *failure)
                count = None
        self._frames[path] = count
        return count

    def video_frames_decode(self, path: str, indices: list[int]) -> bool:
        detail = _decode_video_frames(path, indices)
        if detail is not None:
            self._fail(path, "unreadable", detail)
            self._frames[path] = None
            return False
        return True

    def check_everything(self, found: Found) -> None:
        """Check every file found (``check_all``); the sampler then reuses the results."""
        if found.kind == "videos":
            for g in found.groups:
                self.video_frames(g.paths[0])
            return
        paths = found.images if found.kind == "images" else [p for g in found.groups for p in g.paths]
        self._known = {p: self.image_ok(p) for p in paths}


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def probe_video(path: str) -> tuple[tuple[str, str] | None, int | None]:
    """Check a video's container signature, then read its frame count from the header (no decoding)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        return ("unreadable", f"cannot open: {exc.strerror}"), None
    if not head:
        return ("empty_file", "0 bytes"), None
    if sniff_video(head) is None:
        return ("unreadable", f"not a video (starts with {head[:8]!r})"), None
    import cv2  # imported here: only video entries need OpenCV

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return ("unreadable", "OpenCV cannot open the video"), None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    if count <= 0:
        return ("unreadable", "the video reports no frames"), None
    return None, count


def _decode_image(path: str) -> str | None:
    from PIL import Image  # imported here: only --verify-decode decodes

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # Pillow raises many types for broken files; every one means unusable
        return f"cannot decode: {type(exc).__name__}: {exc}"
    return None


def _decode_video_frames(path: str, indices: list[int]) -> str | None:
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        for i in indices:
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, _ = cap.read()
            if not ok:
                return f"cannot decode frame {i}"
    finally:
        cap.release()
    return None


# --------------------------------------------------------------------------- reports


def _report(found: Found, checker: _Checker, selected: Mapping[str, list[ManifestRow]]) -> GeneratorReport:
    spec = found.generator
    return GeneratorReport(
        name=spec.name,
        source=spec.source,
        role=spec.role,
        dfd_label=spec.dfd_label,
        dfa_label=spec.dfa_label,
        kind=found.kind,
        folders=list(found.folders),
        wanted=spec.wanted(),
        found_files=len(found.groups) if found.kind == "videos" else found.n_files,
        found_videos=found.n_videos,
        checked=checker.checked,
        unusable=checker.bad,
        selected={s: len(selected[s]) for s in SPLITS},
        excluded_by_label=found.excluded_by_label,
        test_list=found.test_list,
        label_files=list(found.label_files),
        json_files=list(found.json_files),
    )


def _find_duplicates(rows: Sequence[ManifestRow], progress: ProgressFn | None) -> list[DuplicateGroup]:
    """Hash each selected file once; report contents that appear under two or more paths."""
    splits_of: dict[str, list[str]] = {}
    for r in rows:
        splits_of.setdefault(r.path, [])
        if r.split not in splits_of[r.path]:
            splits_of[r.path].append(r.split)
    by_hash: dict[str, list[str]] = {}
    paths = sorted(splits_of)
    for i, path in enumerate(paths):
        if progress is not None and i % 1000 == 0:
            progress("hashing for duplicates", i, len(paths))
        try:
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError:
            continue
        by_hash.setdefault(digest, []).append(path)
    groups = []
    for digest, same in sorted(by_hash.items()):
        if len(same) > 1:
            splits = tuple(s for p in same for s in splits_of[p])
            groups.append(DuplicateGroup(digest, tuple(same), splits))
    return groups
