"""Preprocessing: a manifest (or a folder) of images and videos -> the cache ``train`` and ``evaluate`` read.

This module schedules the run: decoding threads read, hash and decode files (``workers``);
the calling thread detects faces on batches of same-size images, prepares each face
(:mod:`~gazeclip_cli.core.data.face_prep`), runs the estimator and writes. What is written,
and how a re-run reuses it, is the cache contract (:mod:`~gazeclip_cli.core.data.cache`,
docs/DATA.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from gazeclip_cli.core.data.cache import (
    CACHE_VERSION,
    FAILED_COLUMNS,
    FAILURE_COLUMNS,
    FAILURES_FILE,
    HASH_COLUMNS,
    PREPROCESSED_COLUMNS,
    PREPROCESSED_FILE,
    SAMPLE_COLUMNS,
    STATE_DIR,
    Appender,
    CacheSettings,
    PreprocessSettings,
    crop_path,
    encode_png,
    estimator_fingerprint,
    estimator_name,
    patch_path,
    read_csv,
    write_csv,
    write_png,
    write_settings,
)
from gazeclip_cli.core.data.face_prep import FacePreparer
from gazeclip_cli.core.data.faces import FaceDetector
from gazeclip_cli.core.data.frame_sampling import frame_indices
from gazeclip_cli.core.data.images import (
    check_image_file,
    check_readable_file,
    count_video_frames,
    decode_image,
    display_path,
    is_image_path,
    is_video_path,
    iter_video_frames,
    read_file_bytes,
)
from gazeclip_cli.core.data.manifest import MANIFEST_COLUMNS, read_manifest
from gazeclip_cli.core.devices import resolve_device
from gazeclip_cli.core.errors import ConfigError, DataError, InputError
from gazeclip_cli.core.ray_engine import RayOptions

__all__ = ["PreprocessProgress", "PreprocessSettings", "PreprocessSummary", "preprocess", "read_inputs"]

# Failure kinds counted in the summary.
FAILURE_KINDS = ("unreadable", "no_face", "head_pose", "duplicate", "missing_frame", "worker_crash")


@dataclass(frozen=True)
class PreprocessProgress:
    """Reported after every finished input row."""

    done: int  # input rows finished
    total: int  # input rows
    path: str  # the row just finished, as written in the CSV files
    new: int  # samples computed so far in this run
    cached: int  # samples reused from the cache so far
    failed: int  # failure records so far


@dataclass(frozen=True)
class PreprocessSummary:
    """What a run did."""

    out_dir: str
    inputs: int  # input rows (manifest rows or files found)
    samples: int  # rows written to preprocessed.csv
    new: int  # samples computed in this run
    cached: int  # samples reused from the cache
    failures: int  # rows written to failures.csv
    failures_by_kind: dict[str, int]  # unreadable, no_face, head_pose, duplicate, missing_frame
    gaze_samples: int  # samples with (pitch, yaw) in preprocessed.csv
    gaze_computed: int  # gaze vectors computed in this run (new samples and backfilled ones)
    ignored_files: int  # files in an input folder without an image or video extension
    seconds: float
    preprocessed_csv: str
    failures_csv: str


ProgressCallback = Callable[[PreprocessProgress], None]


# --- inputs ---------------------------------------------------------------------------------------


@dataclass
class InputRow:
    """One input: a manifest row or a file found in a folder."""

    index: int  # position in the input
    file: str  # absolute path of the image or video
    fields: dict[str, str]  # manifest columns as CSV text ("path" is filled in when written)
    video: bool
    frame_index: int | None  # a video row naming one frame; None: sample the video


def read_inputs(
    source: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None
) -> tuple[list[InputRow], int]:
    """The input rows of a manifest CSV or of a folder (searched recursively, in name order).

    In a folder, files with an image or video extension are inputs (broken symbolic links
    too: they are reported as failures); other files are counted as ignored, and the output
    folder is skipped if it lies inside. Label columns are empty for folder inputs.

    Returns:
        ``(rows, ignored_files)``.

    Raises:
        DataError: the source does not exist or the manifest is malformed.
    """
    src = Path(os.path.abspath(source))
    if src.is_dir():
        return _read_folder(src, Path(os.path.abspath(out_dir)) if out_dir else None)
    if not src.exists():
        raise DataError(f"{display_path(src)}: no such manifest or folder")
    manifest = read_manifest(src)
    rows = []
    for i, r in enumerate(manifest.rows):
        file = os.path.abspath(manifest.resolve(r))
        fields = {
            "path": r.path,
            "split": r.split,
            "dfd_label": str(r.dfd_label),
            "dfa_label": str(r.dfa_label),
            "generator": r.generator,
            "forgery_type": r.forgery_type,
            "architecture": r.architecture,
            "source": r.source,
            "video_id": r.video_id,
            "frame_index": "" if r.frame_index is None else str(r.frame_index),
            "prompt_name": r.prompt_name,
        }
        video = is_video_path(file)
        rows.append(InputRow(i, file, fields, video, r.frame_index if video else None))
    return rows, 0


def _read_folder(folder: Path, out_dir: Path | None) -> tuple[list[InputRow], int]:
    files: list[str] = []
    ignored = 0
    for root, dirs, names in os.walk(folder):
        if out_dir is not None:
            dirs[:] = [d for d in dirs if os.path.join(root, d) != str(out_dir)]
        dirs.sort()
        for name in sorted(names):
            if is_image_path(name) or is_video_path(name):
                files.append(os.path.join(root, name))
            else:
                ignored += 1
    rows = []
    for i, file in enumerate(files):
        fields = dict.fromkeys(MANIFEST_COLUMNS, "")
        rows.append(InputRow(i, file, fields, is_video_path(file), None))
    return rows, ignored


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    """Refuse to run two preprocessing jobs on one output folder at the same time."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one run per folder is the user's job
        yield
        return
    fh = open(state / "lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataError(
                f"{display_path(state.parent)}: another preprocess run is writing to this folder;"
                " wait for it to finish or choose another --out"
            ) from None
        yield
    finally:
        fh.close()


# --- work units -----------------------------------------------------------------------------------


@dataclass
class _Unit:
    """One image, or one frame of a video, of one input row."""

    row: InputRow
    frame: int | None
    content: str  # sha256 of the file
    key: str  # content + settings + frame: sample ids derive from it
    image: np.ndarray | None = None

    def sample_id(self, face: int) -> str:
        return hashlib.sha256(f"{self.key}|{face}".encode()).hexdigest()[:20]

    def prefix(self) -> str:
        return "" if self.frame is None else f"frame {self.frame}: "


@dataclass
class _Prepared:
    """What a decoding thread hands back for an image row."""

    row: InputRow
    unit: _Unit | None = None
    error: str | None = None
    hash_entry: dict[str, str] | None = None


@dataclass
class _VideoJob:
    path: str
    rows: list[InputRow]
    messages: queue.Queue[tuple[str, Any]] = field(default_factory=lambda: queue.Queue(maxsize=8))


@dataclass(frozen=True)
class FaceResult:
    """What one face of an image became: a sample (its PNGs and metadata) or a failure."""

    face: int  # index under the face policy (0 for "no face found")
    kind: str  # "sample", or the failure's kind (no_face, head_pose, worker_crash)
    reason: str = ""  # a failure's reason, without the file name
    crop_png: bytes = b""  # the sample's crop, PNG
    patch_png: bytes = b""  # its normalised gaze patch, PNG
    box: tuple[float, float, float, float] | None = None  # x0 y0 x1 y1 of the face in the image
    score: float | None = None  # MTCNN's probability; None in aligned mode
    gaze: tuple[float, float] | None = None  # (pitch, yaw) when an estimator ran


def prepare_faces(
    preparer: FacePreparer,
    detector: FaceDetector | None,
    estimator: torch.nn.Module | None,
    images: list[np.ndarray],
    batch_size: int,
) -> list[list[FaceResult]]:
    """The heavy part of a batch of same-size images, with no cache state: its faces' results per image.

    Detection of all the images at once, then each face's crop and gaze patch, the estimator
    over the patches (``batch_size`` per pass) and the PNG encoding. ``preprocess`` runs it
    in its own thread, the Ray engine in its workers.
    """
    found = preparer.find_faces(images, detector, len(images))
    per_image: list[list[FaceResult]] = []
    made: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (image, slot, crop, patch)
    for i, (image, faces) in enumerate(zip(images, found, strict=True)):
        results: list[FaceResult] = []
        if not faces:
            results.append(FaceResult(0, "no_face", "no face found"))
        for k, face in enumerate(faces):
            try:
                inputs = preparer.prepare(image, face)
            except InputError as exc:
                reason = (f"face {k + 1} of {len(faces)}: " if len(faces) > 1 else "") + str(exc)
                results.append(FaceResult(k, "head_pose", reason))
                continue
            assert inputs.patch is not None
            made.append((i, len(results), inputs.crop, inputs.patch))
            results.append(FaceResult(k, "sample", box=inputs.box, score=inputs.score))
        per_image.append(results)
    gaze = (
        estimate_gaze(estimator, [m[3] for m in made], batch_size) if estimator is not None and made else None
    )
    for j, (i, slot, crop, patch) in enumerate(made):
        per_image[i][slot] = dataclasses.replace(
            per_image[i][slot],
            crop_png=encode_png(crop),
            patch_png=encode_png(patch),
            gaze=None if gaze is None else (float(gaze[j, 0]), float(gaze[j, 1])),
        )
    return per_image


@torch.inference_mode()
def estimate_gaze(estimator: torch.nn.Module, patches: list[np.ndarray], batch_size: int) -> np.ndarray:
    """(N, 2) pitch and yaw from (224, 224, 3) uint8 patches, in eval mode, ``batch_size`` per pass."""
    device = next(iter(estimator.parameters()), torch.empty(0)).device
    was_training = estimator.training
    estimator.eval()
    try:
        out = []
        for start in range(0, len(patches), batch_size):
            chunk = np.stack(patches[start : start + batch_size])  # (B, 224, 224, 3)
            x = torch.from_numpy(chunk).to(device).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, 224, 224)
            out.append(estimator(x).float().cpu().numpy())  # (B, 2)
        return np.concatenate(out)
    finally:
        estimator.train(was_training)


class _Run:
    """One preprocessing run over a list of input rows (see :func:`preprocess`)."""

    def __init__(
        self,
        rows: list[InputRow],
        out: Path,
        settings: PreprocessSettings,
        detector: FaceDetector | None,
        estimator: torch.nn.Module | None,
        workers: int,
        batch_size: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.rows = rows
        self.out = out
        self.state = out / STATE_DIR
        self.settings = settings
        self.detector = detector
        self.estimator = estimator
        self.estimator_id = estimator_fingerprint(estimator) if estimator is not None else ""
        self.workers = max(1, workers)
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self.settings_key = settings.cache_key()
        self.preparer = FacePreparer(settings)
        self.stop = threading.Event()

        self.samples: dict[str, dict[str, str]] = {}  # journal: sample id -> sample record
        self.failed: dict[str, dict[str, str]] = {}  # sample id -> kind, reason
        self.hashes: dict[tuple[str, int, int], str] = {}
        self.last_estimator = ""  # fingerprint of the estimator a previous run used
        self.last_estimator_name = ""
        # Per row: its units' frames in order, and what each resolved to.
        self.units_of: dict[int, list[int | None]] = {}
        self.results: dict[tuple[int, int | None], list[tuple[str, dict[str, str]]]] = {}
        self.pending: dict[int, int] = {}
        self.first_seen: dict[str, str] = {}  # unit key -> where it was first met in this run
        self.buckets: dict[tuple[int, ...], list[_Unit]] = {}
        self.waiting_gaze: list[str] = []
        self.counts = {"new": 0, "cached": 0, "failed": 0, "gaze": 0, "done": 0}
        self.kinds = dict.fromkeys(FAILURE_KINDS, 0)

    # -- cache state ------------------------------------------------------------------------------

    def load_state(self) -> None:
        for rec in read_csv(self.state / "samples.csv", SAMPLE_COLUMNS):
            self.samples[rec["sample_id"]] = rec
        # A sample counts only if both its images are still there.
        self.samples = {
            k: r
            for k, r in self.samples.items()
            if (self.out / r["crop_path"]).is_file() and (self.out / r["patch_path"]).is_file()
        }
        for rec in read_csv(self.state / "failed.csv", FAILED_COLUMNS):
            self.failed[rec["sample_id"]] = rec
        for rec in read_csv(self.state / "hashes.csv", HASH_COLUMNS):
            with contextlib.suppress(ValueError):
                self.hashes[(rec["path"], int(rec["size"]), int(rec["mtime_ns"]))] = rec["sha256"]
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            info = json.loads((self.state / "cache.json").read_text())
            self.last_estimator = info["gaze_estimator"] or ""
            self.last_estimator_name = info.get("gaze_estimator_name") or ""

    def record(self) -> CacheSettings:
        """The settings record of this run's ``preprocessed.csv``: its settings and the estimator of its angles."""
        if self.estimator is not None:
            return CacheSettings(self.settings, estimator_name(self.estimator), self.estimator_id)
        return CacheSettings(self.settings, self.last_estimator_name, self.last_estimator)

    def cached(self, unit: _Unit) -> bool:
        sid = unit.sample_id(0)
        return sid in self.samples or sid in self.failed

    # -- decoding threads -------------------------------------------------------------------------

    def _content_hash(self, file: str, read: Callable[[], bytes] | None) -> tuple[str, dict[str, str] | None]:
        st = os.stat(file)
        known = self.hashes.get((file, st.st_size, st.st_mtime_ns))
        if known:
            return known, None
        if read is not None:
            digest = hashlib.sha256(read()).hexdigest()
        else:
            h = hashlib.sha256()
            with open(file, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()
        entry = {"path": file, "size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns), "sha256": digest}
        return digest, entry

    def unit_for(self, row: InputRow, frame: int | None, content: str) -> _Unit:
        key = f"{self.settings_key}|{content}|{'' if frame is None else frame}"
        return _Unit(row=row, frame=frame, content=content, key=key)

    def prepare_image(self, row: InputRow) -> _Prepared:
        """Hash and (unless cached) decode one image; never raises for a bad file."""
        try:
            check_image_file(row.file)
            data: bytes | None = None

            def read() -> bytes:
                nonlocal data
                data = read_file_bytes(row.file)
                return data

            content, entry = self._content_hash(row.file, read)
            unit = self.unit_for(row, None, content)
            if not self.cached(unit):
                try:
                    unit.image = decode_image(
                        data if data is not None else read_file_bytes(row.file),
                        display_path(row.file),
                        max_pixels=self.settings.max_pixels,
                    )
                except InputError as exc:  # the content itself is bad: cached like "no face"
                    return _Prepared(row, unit=unit, error=str(exc), hash_entry=entry)
            return _Prepared(row, unit=unit, hash_entry=entry)
        except InputError as exc:
            return _Prepared(row, error=str(exc))
        except OSError as exc:  # the file changed between the checks and the read
            return _Prepared(row, error=f"{display_path(row.file)}: cannot read ({exc.strerror})")

    def stream_video(self, job: _VideoJob) -> None:
        """Plan a video's units, then decode the frames they need into the job's queue."""

        def put(message: tuple[str, Any]) -> bool:
            while not self.stop.is_set():
                try:
                    job.messages.put(message, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            check_readable_file(job.path)
            content, entry = self._content_hash(job.path, None)
            count = count_video_frames(job.path)
            sampled = frame_indices(count, **self.settings.video_sampling())
            units = []
            for row in job.rows:
                frames = sampled if row.frame_index is None else [row.frame_index]
                units += [self.unit_for(row, f, content) for f in frames]
            if not put(("plan", (units, entry))):
                return
            needed = sorted({u.frame for u in units if not self.cached(u) and u.frame is not None})
            video_id = job.rows[0].fields.get("video_id") or None
            frames = iter_video_frames(job.path, needed, video_id=video_id) if needed else iter(())
            for frame in frames:
                if not put(("frame", (frame.frame_index, frame.image))):
                    return
            put(("end", None))
        except InputError as exc:
            put(("error", str(exc)))
        except OSError as exc:
            put(("error", f"{display_path(job.path)}: cannot read ({exc.strerror})"))
        except BaseException as exc:  # a bug: hand it to the main thread, which re-raises it
            put(("crash", exc))

    # -- the main thread ------------------------------------------------------------------------

    def csv_path(self, row: InputRow) -> str:
        rel = os.path.relpath(row.file, self.out)
        return display_path(rel).replace(os.sep, "/")

    def resolve(self, row: InputRow, frame: int | None, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Record what one unit of a row became, append it to the output files, report progress."""
        self.results[(row.index, frame)] = entries
        out_rows = [self.output_row(row, frame, rec) for kind, rec in entries if kind == "sample"]
        fail_rows = [
            {"path": self.csv_path(row), "reason": rec["reason"]}
            for kind, rec in entries
            if kind == "failure"
        ]
        self.preprocessed.write(out_rows)
        self.failures.write(fail_rows)
        self.pending[row.index] -= 1
        if self.pending[row.index] == 0:
            self.counts["done"] += 1
            if self.progress is not None:
                self.progress(
                    PreprocessProgress(
                        done=self.counts["done"],
                        total=len(self.rows),
                        path=self.csv_path(row),
                        new=self.counts["new"],
                        cached=self.counts["cached"],
                        failed=self.counts["failed"],
                    )
                )

    def failure(self, kind: str, reason: str) -> tuple[str, dict[str, str]]:
        self.counts["failed"] += 1
        self.kinds[kind] += 1
        return ("failure", {"kind": kind, "reason": reason})

    def output_row(self, row: InputRow, frame: int | None, rec: dict[str, str]) -> dict[str, str]:
        out = dict(row.fields)
        out["path"] = self.csv_path(row)
        if row.video:
            out["video_id"] = row.fields.get("video_id") or Path(display_path(row.file)).stem
            out["frame_index"] = "" if frame is None else str(frame)
        show_gaze = rec["gaze_estimator"] and rec["gaze_estimator"] == (
            self.estimator_id or self.last_estimator
        )
        out.update(
            sample_id=rec["sample_id"],
            crop_path=rec["crop_path"],
            patch_path=rec["patch_path"],
            gaze_pitch=rec["gaze_pitch"] if show_gaze else "",
            gaze_yaw=rec["gaze_yaw"] if show_gaze else "",
            face_box=rec["face_box"],
            face_score=rec["face_score"],
        )
        return out

    def plan(self, row: InputRow, frames: list[int | None]) -> None:
        if not frames:  # a video with no frame to sample: say so rather than drop it
            self.units_of[row.index] = [None]
            self.pending[row.index] = 1
            self.resolve(row, None, [self.failure("missing_frame", "video has no frames to sample")])
            return
        self.units_of[row.index] = frames
        self.pending[row.index] = len(frames)

    def register(self, unit: _Unit) -> bool:
        """Resolve a unit from the cache if possible; True when it still needs processing."""
        where = self.csv_path(unit.row) + ("" if unit.frame is None else f" frame {unit.frame}")
        first = self.first_seen.get(unit.key)
        if first is not None:
            reason = f"{unit.prefix()}identical content to {first}; kept once"
            self.resolve(unit.row, unit.frame, [self.failure("duplicate", reason)])
            return False
        self.first_seen[unit.key] = where
        if not self.cached(unit):
            return True
        entries = []
        face = 0
        while True:
            sid = unit.sample_id(face)
            if sid in self.samples:
                self.counts["cached"] += 1
                entries.append(("sample", self.samples[sid]))
                if self.estimator is not None and self.samples[sid]["gaze_estimator"] != self.estimator_id:
                    self.waiting_gaze.append(sid)
            elif sid in self.failed:
                entries.append(
                    self.failure(self.failed[sid]["kind"], unit.prefix() + self.failed[sid]["reason"])
                )
            else:
                break
            face += 1
        self.resolve(unit.row, unit.frame, entries)
        return False

    def add(self, unit: _Unit) -> None:
        """Queue a decoded unit for detection with others of its size."""
        assert unit.image is not None
        self.buckets.setdefault(unit.image.shape, []).append(unit)
        bucket = self.buckets[unit.image.shape]
        if len(bucket) >= self.batch_size:
            self.process(self.buckets.pop(unit.image.shape))
        elif sum(len(b) for b in self.buckets.values()) >= 2 * self.batch_size:
            # Many different sizes: process the fullest bucket to bound the memory held.
            shape = max(self.buckets, key=lambda s: len(self.buckets[s]))
            self.process(self.buckets.pop(shape))

    def flush(self) -> None:
        for shape in list(self.buckets):
            self.process(self.buckets.pop(shape))

    def process(self, units: list[_Unit]) -> None:
        """Detect, crop, normalise, estimate gaze and write one batch of same-size images."""
        images = [u.image for u in units]
        for unit in units:
            unit.image = None  # released once the batch is done
        self.store(
            units, prepare_faces(self.preparer, self.detector, self.estimator, images, self.batch_size)
        )  # type: ignore[arg-type]

    def store(self, units: list[_Unit], results: list[list[FaceResult]]) -> None:
        """Write a batch's samples (PNGs, then the journal), record its failures, resolve its units."""
        records: list[dict[str, str]] = []
        new_failed: list[dict[str, str]] = []
        entries: list[list[tuple[str, dict[str, str]]]] = []
        for unit, faces in zip(units, results, strict=True):
            entries.append([])
            for r in faces:
                sid = unit.sample_id(r.face)
                if r.kind != "sample":
                    entries[-1].append(self.failure(r.kind, unit.prefix() + r.reason))
                    if r.kind != "worker_crash":  # the content's own failure: cached, not retried
                        new_failed.append({"sample_id": sid, "kind": r.kind, "reason": r.reason})
                    continue
                assert r.box is not None
                crop_rel, patch_rel = crop_path(sid), patch_path(sid)
                write_png(self.out / crop_rel, r.crop_png)
                write_png(self.out / patch_rel, r.patch_png)
                rec = {
                    "sample_id": sid,
                    "crop_path": crop_rel,
                    "patch_path": patch_rel,
                    "gaze_pitch": "" if r.gaze is None else f"{r.gaze[0]:.6f}",
                    "gaze_yaw": "" if r.gaze is None else f"{r.gaze[1]:.6f}",
                    "gaze_estimator": "" if r.gaze is None else self.estimator_id,
                    "face_box": " ".join(f"{v:.2f}" for v in r.box),
                    "face_score": "" if r.score is None else f"{r.score:.6f}",
                }
                records.append(rec)
                self.samples[sid] = rec
                entries[-1].append(("sample", rec))
        self.counts["new"] += len(records)
        self.counts["gaze"] += sum(1 for rec in records if rec["gaze_estimator"])
        # The journal first: once a sample is there, a later run will not redo it.
        self.journal.write(records)
        self.failed_log.write(new_failed)
        for rec in new_failed:
            self.failed[rec["sample_id"]] = rec
        for unit, filled in zip(units, entries, strict=True):
            self.resolve(unit.row, unit.frame, filled)

    def run_estimator(self, patches: list[np.ndarray]) -> np.ndarray:
        """(N, 2) pitch and yaw from (224, 224, 3) uint8 patches (:func:`estimate_gaze`)."""
        assert self.estimator is not None
        return estimate_gaze(self.estimator, patches, self.batch_size)

    def backfill_gaze(self) -> None:
        """Gaze for cached samples that have none (or another estimator's), from their stored patches."""
        todo = list(dict.fromkeys(self.waiting_gaze))
        for start in range(0, len(todo), self.batch_size):
            sids = todo[start : start + self.batch_size]
            patches = []
            for sid in sids:
                bgr = cv2.imread(str(self.out / self.samples[sid]["patch_path"]), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise DataError(
                        f"{self.out / self.samples[sid]['patch_path']}: cached patch unreadable; delete it and re-run"
                    )
                patches.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            gaze = self.run_estimator(patches)
            records = []
            for sid, (pitch, yaw) in zip(sids, gaze, strict=True):
                rec = dict(self.samples[sid], gaze_pitch=f"{pitch:.6f}", gaze_yaw=f"{yaw:.6f}")
                rec["gaze_estimator"] = self.estimator_id
                self.samples[sid] = rec
                records.append(rec)
            self.journal.write(records)
            self.counts["gaze"] += len(records)

    def run(self) -> PreprocessSummary:
        start = time.perf_counter()
        self.state.mkdir(parents=True, exist_ok=True)
        with _locked(self.state):
            self.load_state()
            # The record first: preprocessed.csv is rewritten from here on, also if the run stops.
            write_settings(self.out, self.record())
            self.journal = Appender(self.state / "samples.csv", SAMPLE_COLUMNS, truncate=False)
            self.failed_log = Appender(self.state / "failed.csv", FAILED_COLUMNS, truncate=False)
            self.hash_log = Appender(self.state / "hashes.csv", HASH_COLUMNS, truncate=False)
            self.preprocessed = Appender(self.out / PREPROCESSED_FILE, PREPROCESSED_COLUMNS, truncate=True)
            self.failures = Appender(self.out / FAILURES_FILE, FAILURE_COLUMNS, truncate=True)
            pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gazeclip-decode")
            try:
                self.consume(pool)
                self.flush()
                self.backfill_gaze()
            finally:
                self.stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                for appender in (
                    self.journal,
                    self.failed_log,
                    self.hash_log,
                    self.preprocessed,
                    self.failures,
                ):
                    appender.close()
            return self.finish(time.perf_counter() - start)

    def jobs(self) -> list[InputRow | _VideoJob]:
        """Image rows one by one; all rows of one video file as one job (decoded in one pass)."""
        jobs: list[InputRow | _VideoJob] = []
        videos: dict[str, _VideoJob] = {}
        for row in self.rows:
            if not row.video:
                jobs.append(row)
            elif row.file in videos:
                videos[row.file].rows.append(row)
            else:
                videos[row.file] = _VideoJob(row.file, [row])
                jobs.append(videos[row.file])
        return jobs

    def consume(self, pool: ThreadPoolExecutor) -> None:
        """Hand jobs to the decoding threads in input order and take their results in that order."""
        jobs = iter(self.jobs())
        window: deque[tuple[InputRow | _VideoJob, Future[Any]]] = deque()
        ahead = 2 * self.workers + self.batch_size  # decoded images waiting at most

        def refill() -> None:
            while len(window) < ahead:
                job = next(jobs, None)
                if job is None:
                    return
                if isinstance(job, _VideoJob):
                    window.append((job, pool.submit(self.stream_video, job)))
                else:
                    window.append((job, pool.submit(self.prepare_image, job)))

        refill()
        while window:
            job, future = window.popleft()
            if isinstance(job, _VideoJob):
                self.take_video(job, future)
            else:
                self.take_image(future.result())
            refill()

    def remember_hash(self, entry: dict[str, str] | None) -> None:
        if entry is not None:
            self.hashes[(entry["path"], int(entry["size"]), int(entry["mtime_ns"]))] = entry["sha256"]
            self.hash_log.write([entry])

    def take_image(self, prepared: _Prepared) -> None:
        row = prepared.row
        self.plan(row, [None])
        self.remember_hash(prepared.hash_entry)
        unit = prepared.unit
        if unit is None:  # not even readable: checked again next run (a permission may be fixed)
            assert prepared.error is not None
            self.resolve(row, None, [self.failure("unreadable", _reason_only(prepared.error, row.file))])
            return
        if not self.register(unit):
            return
        if prepared.error is not None:
            reason = _reason_only(prepared.error, row.file)
            record = {"sample_id": unit.sample_id(0), "kind": "unreadable", "reason": reason}
            self.failed_log.write([record])
            self.failed[record["sample_id"]] = record
            self.resolve(row, None, [self.failure("unreadable", reason)])
            return
        # The decoding thread skipped decoding only for cached units or for later duplicates,
        # both resolved by register().
        assert unit.image is not None
        self.add(unit)

    def take_video(self, job: _VideoJob, future: Future[Any]) -> None:
        waiting: dict[int, list[_Unit]] = {}
        planned = False
        while True:
            try:
                kind, payload = job.messages.get(timeout=0.5)
            except queue.Empty:
                if future.done() and job.messages.empty():
                    future.result()  # re-raises whatever ended the decoding thread
                    raise RuntimeError(
                        f"video decoding of {display_path(job.path)} stopped without a result"
                    ) from None
                continue
            if kind == "crash":
                raise payload
            if kind == "error":
                reason = _reason_only(payload, job.path)
                if not planned:
                    for row in job.rows:
                        self.plan(row, [None])
                        self.resolve(row, None, [self.failure("unreadable", reason)])
                for frame, units in sorted(waiting.items()):
                    for unit in units:
                        self.resolve(
                            unit.row, unit.frame, [self.failure("unreadable", f"frame {frame}: {reason}")]
                        )
                return
            if kind == "plan":
                units, entry = payload
                planned = True
                self.remember_hash(entry)
                for row in job.rows:
                    self.plan(row, [u.frame for u in units if u.row is row])
                for unit in units:
                    if self.register(unit):
                        waiting.setdefault(unit.frame, []).append(unit)
            elif kind == "frame":
                index, image = payload
                for unit in waiting.pop(index, []):
                    unit.image = image
                    self.add(unit)
            elif kind == "end":
                for frame, units in sorted(waiting.items()):
                    for unit in units:
                        reason = f"frame {frame}: could not be decoded (the video is shorter than it says)"
                        self.resolve(unit.row, unit.frame, [self.failure("missing_frame", reason)])
                return

    def finish(self, seconds: float) -> PreprocessSummary:
        """Rewrite the outputs complete, in input order, without duplicates; compact the journals."""
        out_rows: list[dict[str, str]] = []
        fail_rows: list[dict[str, str]] = []
        for row in self.rows:
            for frame in self.units_of.get(row.index, [None]):
                for kind, rec in self.results.get((row.index, frame), []):
                    if kind == "sample":
                        out_rows.append(self.output_row(row, frame, self.samples[rec["sample_id"]]))
                    else:
                        fail_rows.append({"path": self.csv_path(row), "reason": rec["reason"]})
        write_csv(self.out / PREPROCESSED_FILE, PREPROCESSED_COLUMNS, out_rows)
        write_csv(self.out / FAILURES_FILE, FAILURE_COLUMNS, fail_rows)
        write_csv(self.state / "samples.csv", SAMPLE_COLUMNS, list(self.samples.values()))
        write_csv(self.state / "failed.csv", FAILED_COLUMNS, list(self.failed.values()))
        latest: dict[str, dict[str, str]] = {}  # one entry per file: the last one seen
        for (path, size, mtime), digest in self.hashes.items():
            latest[path] = {"path": path, "size": str(size), "mtime_ns": str(mtime), "sha256": digest}
        write_csv(self.state / "hashes.csv", HASH_COLUMNS, list(latest.values()))
        record = self.record()
        info = {
            "version": CACHE_VERSION,
            "settings": self.settings_key,
            "gaze_estimator": record.gaze_estimator_fingerprint or None,
            "gaze_estimator_name": record.gaze_estimator or None,
        }
        (self.state / "cache.json").write_text(json.dumps(info, indent=2) + "\n")
        return PreprocessSummary(
            out_dir=display_path(self.out),
            inputs=len(self.rows),
            samples=len(out_rows),
            new=self.counts["new"],
            cached=self.counts["cached"],
            failures=len(fail_rows),
            failures_by_kind={k: v for k, v in self.kinds.items() if v},
            gaze_samples=sum(1 for r in out_rows if r["gaze_pitch"]),
            gaze_computed=self.counts["gaze"],
            ignored_files=0,
            seconds=seconds,
            preprocessed_csv=display_path(self.out / PREPROCESSED_FILE),
            failures_csv=display_path(self.out / FAILURES_FILE),
        )


def _reason_only(message: str, file: str) -> str:
    """An InputError message without its leading file name (failures.csv has its own path column)."""
    prefix = display_path(file) + ": "
    return message[len(prefix) :] if message.startswith(prefix) else message


def preprocess(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: PreprocessSettings = PreprocessSettings(),
    *,
    gaze_estimator: torch.nn.Module | None = None,
    detector: FaceDetector | None = None,
    device: str | torch.device = "cpu",
    workers: int = 2,
    batch_size: int = 16,
    progress: ProgressCallback | None = None,
    ray: RayOptions | None = None,
) -> PreprocessSummary:
    """Preprocess a manifest or a folder into ``out_dir`` (see the module docstring).

    Args:
        source: a manifest CSV written by ``gazeclip build-benchmark``, or a folder of
            images and videos.
        out_dir: the cache folder; created if missing; re-running into it does only new work.
        settings: face mode and policy, crop, normalisation, camera and video sampling.
        gaze_estimator: a frozen :class:`~gazeclip_cli.core.model.gaze_estimator.GazeEstimator`
            (any module mapping (B, 3, 224, 224) in [0, 1] to (B, 2)); when given, each
            sample's (pitch, yaw) is stored.
        detector: a :class:`FaceDetector` to reuse; built on ``device`` when needed.
        device: where MTCNN runs when no detector is given.
        workers: decoding threads.
        batch_size: images per detection batch (images of one size).
        progress: called after each finished input row.
        ray: run each batch's detection, preparation and gaze estimation on a Ray cluster
            (:mod:`~gazeclip_cli.core.data.preprocess_ray`; its device there is ``ray.device``).

    Returns:
        A :class:`PreprocessSummary`.

    Raises:
        DataError: the source is missing or malformed, the folder is in use, or a write fails.
        ConfigError: the settings do not fit the estimator.
    """
    dev = resolve_device(device) if ray is None else None  # with Ray: the workers' device, ray.device
    if gaze_estimator is not None and settings.patch.size != 224:
        raise ConfigError(
            f"the gaze estimator reads 224 x 224 patches; the patch size is {settings.patch.size}"
        )
    out = Path(os.path.abspath(out_dir))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{display_path(out)}: cannot create the output folder ({exc.strerror})") from None
    rows, ignored = read_inputs(source, out)
    if ray is not None:
        from gazeclip_cli.core.data.preprocess_ray import RayRun

        args = (rows, out, settings, None, gaze_estimator, workers, batch_size, progress)
        summary = RayRun(*args, options=ray).run()
    else:
        if detector is None and not settings.aligned:
            detector = FaceDetector(dev, min_face_size=settings.min_face_size)  # type: ignore[arg-type]
        summary = _Run(rows, out, settings, detector, gaze_estimator, workers, batch_size, progress).run()
    return dataclasses.replace(summary, ignored_files=ignored)
