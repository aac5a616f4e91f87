"""The predictor: a model folder, a face detector and the settings, turning files into verdicts.

Inference state lives in :class:`Predictor` (built once, used for many files). A file goes
through two stages, so that a scan can run the first in worker threads while the model
runs the second:

1. :meth:`Predictor.prepare` (CPU, any thread): read the file once (SHA-256 and decoding
   from the same bytes), decode it with :mod:`gazeclip_cli.core.data.images` (every bad
   input is an :class:`InputError`), then find and prepare the faces (the crop and the
   ETH-XGaze-normalised gaze patch) with :class:`~gazeclip_cli.core.data.face_prep.FacePreparer`,
   the step ``preprocess`` runs, under the settings the model folder records, so inference
   sees what training saw. Videos are sampled (N frames spread evenly) and each frame is
   treated as an image.
2. :meth:`Predictor.predict_faces` (the model's device): batches of faces through the
   test path; per face the detection verdict and P(fake), the attributed class with its
   probability and the top three, "unknown generator" when the top probability is below
   the threshold, and the gaze (pitch, yaw) the estimator gave.

The crop is cut at 256 (the preprocessing cache's size) and, when the architecture uses
another image size H (the tiny test model: 64), resized by the function ``train`` resizes
the cached crops with (:func:`~gazeclip_cli.core.data.faces.resize_crop`), so the pixels
match training's.

Shapes: crops (B, H, H, 3) uint8 -> images (B, 3, H, H) in [0, 1]; patches (B, 224, 224, 3)
uint8 -> (B, 3, 224, 224) in [0, 1].
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gazeclip_cli.core.data.cache import CacheSettings, PreprocessSettings, settings_of_model
from gazeclip_cli.core.data.face_prep import FacePreparer
from gazeclip_cli.core.data.faces import FACE_POLICIES, Face, FaceDetector, resize_crop
from gazeclip_cli.core.data.frame_sampling import DEFAULT_FRAMES_PER_VIDEO
from gazeclip_cli.core.data.gaze_normalization import pitchyaw_to_vector, vector_to_pitchyaw
from gazeclip_cli.core.data.images import (
    check_image_file,
    check_readable_file,
    decode_image,
    display_path,
    is_video_path,
    read_image_bytes,
    sample_video_frames,
)
from gazeclip_cli.core.devices import resolve_device
from gazeclip_cli.core.errors import ConfigError, InputError, ModelFolderError, WeightsError
from gazeclip_cli.core.inference.fast_cpu import (
    AUTO,
    TORCH,
    ExportRecord,
    OnnxForward,
    check_runtime,
    planned_runtime,
    resolve_runtime,
)
from gazeclip_cli.core.inference.gradcam import GradCam, grad_cam
from gazeclip_cli.core.inference.provenance import (
    ModelProvenance,
    Provenance,
    build_provenance,
    model_provenance,
    sha256_of_bytes,
    sha256_of_file,
)
from gazeclip_cli.core.model.config import DetectorConfig
from gazeclip_cli.core.model.detector import Detector
from gazeclip_cli.core.model.folder import (
    WEIGHTS_FILE,
    load_model_folder,
    model_folder_sha256,
    read_config,
    read_meta,
)
from gazeclip_cli.core.weights.checksums import cached_sha256
from gazeclip_cli.core.weights.locate import WeightSources, resolve_weight, weights_dir

FACE_MODES = ("detect", "aligned")
UNKNOWN_GENERATOR = "unknown generator"


def absent_experts_note(experts: tuple[str, ...]) -> str | None:
    """One line naming the expert a model lacks (the paper's Fig. 9 ablation) and what stays empty."""
    if "detection" not in experts:
        return "this model has no detection expert (experts = ['attribution']): no verdict or P(fake)"
    if "attribution" not in experts:
        return "this model has no attribution expert (experts = ['detection']): no generator or top classes"
    return None


GAZE_PATCH_SIZE = 224


@dataclass(frozen=True)
class PredictorSettings:
    """How faces are found and verdicts are given."""

    threshold: float = 0.9  # tau: below this top attribution probability the generator is unknown
    faces: str | None = None  # face policy: largest, score or all; None: the model folder's (largest)
    face_mode: str | None = None  # detect (MTCNN) or aligned (already face crops); None: the model folder's
    batch_size: int = 16  # faces per forward pass
    video_frames: int = DEFAULT_FRAMES_PER_VIDEO  # frames sampled evenly from each video
    top_k: int = 3  # attribution classes listed per face
    runtime: str = AUTO  # what runs the forward: one of fast_cpu.RUNTIMES (core/inference/fast_cpu.py)

    def __post_init__(self) -> None:
        check_runtime(self.runtime)
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"threshold {self.threshold}: must be in (0, 1] (the paper uses 0.9)")
        if self.faces is not None and self.faces not in FACE_POLICIES:
            raise ConfigError(f"face policy '{self.faces}': use one of {', '.join(FACE_POLICIES)}")
        if self.face_mode is not None and self.face_mode not in FACE_MODES:
            raise ConfigError(f"face mode '{self.face_mode}': use one of {', '.join(FACE_MODES)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size {self.batch_size}: must be at least 1")
        if self.video_frames < 1:
            raise ConfigError(f"video frames {self.video_frames}: must be at least 1")
        if self.top_k < 1:
            raise ConfigError(f"top_k {self.top_k}: must be at least 1")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PreparedFace:
    """One face ready for the network."""

    face_index: int  # rank under the face policy within its image or frame (0 = largest)
    frame_index: int | None  # frame of a video; None for a still image
    box: tuple[float, float, float, float]  # x0 y0 x1 y1 in source pixels
    detector_score: float | None  # MTCNN's probability; None in aligned mode
    crop: np.ndarray  # (H, H, 3) uint8, the network's image input
    patch: np.ndarray | None  # (224, 224, 3) uint8 normalised gaze patch; None without a gaze encoder
    rotation: np.ndarray | None  # (3, 3) camera -> normalised-camera rotation of the patch


@dataclass(frozen=True)
class FaceFailure:
    """A face that was found but could not be prepared (its head pose could not be estimated)."""

    face_index: int
    frame_index: int | None
    box: tuple[float, float, float, float]
    error: str


@dataclass
class PreparedInput:
    """One input file after stage 1: its faces ready for the network, or why it cannot be scored."""

    path: str  # printable path (undecodable bytes escaped)
    kind: str  # "image" or "video"
    sha256: str | None  # of the file's bytes; None when the file could not be read
    faces: list[PreparedFace] = field(default_factory=list)
    face_failures: list[FaceFailure] = field(default_factory=list)
    error: str | None = None  # the whole file failed (unreadable, not an image, no face, ...)
    image: np.ndarray | None = None  # decoded RGB image, kept only when asked (the HTML report)
    frames: int = 0  # frames sampled from a video


@dataclass(frozen=True)
class ClassProbability:
    """One attribution class and its softmax probability."""

    name: str
    probability: float


@dataclass(frozen=True)
class FacePrediction:
    """The verdict on one face."""

    face_index: int
    frame_index: int | None
    box: tuple[float, float, float, float]  # x0 y0 x1 y1 in source pixels
    detector_score: float | None
    # verdict and p_fake are None for a model without the detection expert; generator,
    # generator_probability and unknown are None (top, probabilities empty) without the
    # attribution expert (the paper's Fig. 9 ablation; see absent_experts_note).
    verdict: str | None  # "fake" or "real": argmax of the detection expert
    p_fake: float | None  # softmax probability of the detection expert's fake class
    generator: str | None  # attributed class (argmax of the attribution expert), a generator or a real source
    generator_probability: float | None  # its softmax probability
    unknown: bool | None  # generator_probability < threshold: an unseen ("unknown") generator
    top: tuple[ClassProbability, ...]  # the top-k classes, most probable first
    probabilities: tuple[float, ...]  # every class's probability, in class order
    gaze_pitch: float | None  # radians, in the normalised camera the estimator sees
    gaze_yaw: float | None  # radians

    @property
    def attribution(self) -> str | None:
        """What to tell a person: the generator, or "unknown generator" (None without the expert)."""
        return UNKNOWN_GENERATOR if self.unknown else self.generator

    def as_dict(self) -> dict[str, Any]:
        return {
            "face_index": self.face_index,
            "frame_index": self.frame_index,
            "box": list(self.box),
            "detector_score": self.detector_score,
            **_verdict_dict(self),
            "gaze": None if self.gaze_pitch is None else {"pitch": self.gaze_pitch, "yaw": self.gaze_yaw},
        }


@dataclass(frozen=True)
class VideoVerdict:
    """A video's score from its sampled frames.

    ``p_fake`` is the mean over frames of each frame's P(fake) (the highest among its faces:
    a frame is as fake as its most suspicious face); the attribution is the mean
    attribution probability over every scored face.
    """

    frames_scored: int
    verdict: str | None  # None fields: as FacePrediction's, for a model without that expert
    p_fake: float | None
    generator: str | None
    generator_probability: float | None
    unknown: bool | None
    top: tuple[ClassProbability, ...]

    @property
    def attribution(self) -> str | None:
        return UNKNOWN_GENERATOR if self.unknown else self.generator

    def as_dict(self) -> dict[str, Any]:
        return {"frames_scored": self.frames_scored, **_verdict_dict(self)}


def _verdict_dict(v: FacePrediction | VideoVerdict) -> dict[str, Any]:
    """The JSON keys a face's and a video's verdicts share, in output order."""
    return {
        "verdict": v.verdict,
        "p_fake": v.p_fake,
        "attribution": v.attribution,
        "generator": v.generator,
        "generator_probability": v.generator_probability,
        "unknown": v.unknown,
        "top": [{"name": c.name, "probability": c.probability} for c in v.top],
    }


@dataclass
class InputResult:
    """The verdicts on one input file."""

    path: str
    kind: str  # "image" or "video"
    sha256: str | None
    faces: list[FacePrediction] = field(default_factory=list)
    face_failures: list[FaceFailure] = field(default_factory=list)
    error: str | None = None
    video: VideoVerdict | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "kind": self.kind,
            "sha256": self.sha256,
            "error": self.error,
            "faces": [f.as_dict() for f in self.faces],
            "face_errors": [asdict(f) for f in self.face_failures],
            "video": None if self.video is None else self.video.as_dict(),
        }


def input_problems(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Inputs that cannot be read at all (missing, a folder, empty, unreadable, too large), one message
    each: cheap checks, made before a model is loaded so that a mistyped name fails at once."""
    problems = []
    for path in paths:
        try:
            if is_video_path(path):
                check_readable_file(path)
            else:
                check_image_file(path)
        except InputError as exc:
            problems.append(str(exc))
    return problems


def error_reason(message: str, path: str) -> str:
    """An input error's message without the leading file name, for grouping failures by cause."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def to_tensor(arrays: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """(B, S, S, 3) uint8 arrays -> (B, 3, S, S) float in [0, 1] on ``device``."""
    batch = torch.from_numpy(np.stack(arrays)).to(device)  # (B, S, S, 3) uint8
    # One pass casts and lays out contiguous NCHW (a channels-last float view would make oneDNN
    # build a second set of kernels), instead of a uint8 contiguous copy and then a cast
    # (scripts/bench_prepare.py: 1.70 against 1.95 ms per 16 gaze patches).
    images = batch.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    return images.div_(255.0)


def preparation_for(
    record: CacheSettings | None, settings: PredictorSettings, folder: str | os.PathLike[str]
) -> PreprocessSettings:
    """How faces are prepared for a model: its folder's record, with the run's face choice.

    The record fixes how a face is cut and normalised (face mode, crop, virtual camera, camera,
    template, smallest face); the run may choose which faces are scored (the face policy,
    default the record's). A folder without a record gets the defaults of ``preprocess``.

    Raises:
        ConfigError: the run asks for another face mode than the model was trained on.
    """
    if record is None:
        base = PreprocessSettings(aligned=settings.face_mode == "aligned")
    else:
        base = record.settings
        mode = "aligned" if base.aligned else "detect"
        if settings.face_mode is not None and settings.face_mode != mode:
            trained = "aligned face crops" if base.aligned else "detected faces"
            hint = "leave --aligned out" if settings.face_mode == "aligned" else "leave the face mode unset"
            raise ConfigError(
                f"{folder}: face mode '{settings.face_mode}' contradicts the model folder, trained on "
                f"{trained} (its preprocessing record: face mode '{mode}', aligned = {str(base.aligned).lower()}); "
                f"{hint} to prepare faces as in training"
            )
    return replace(base, face_policy=settings.faces or base.face_policy)


class InputPreparer:
    """Stage 1 alone: files -> faces ready for the network, under the preparation a model expects.

    A :class:`Predictor` holds one; the Ray engine builds one on its own in CPU workers that
    prepare files for model workers elsewhere (no model is loaded). Safe to use from several
    threads.

    Args:
        settings: the predictor's settings in force (face policy, video frames, batch size).
        preparation: how faces are cut and normalised (:func:`preparation_for`).
        image_size: the network's input side H (crops are resized to it).
        uses_gaze: whether the model reads gaze patches (none are made otherwise).
        detector: MTCNN, for detected faces; None in aligned mode.
    """

    def __init__(
        self,
        settings: PredictorSettings,
        preparation: PreprocessSettings,
        image_size: int,
        uses_gaze: bool,
        detector: FaceDetector | None,
    ) -> None:
        self.settings = settings
        self.preparation = preparation
        self.image_size = image_size
        self.uses_gaze = uses_gaze
        self.detector = detector
        self.preparer = FacePreparer(preparation)

    def prepare(self, path: str | os.PathLike[str], *, keep_image: bool = False) -> PreparedInput:
        """Read, decode, find and prepare the faces of one file; never raises for a bad input.

        Args:
            path: an image or video file.
            keep_image: keep the decoded image in the result (for drawing a report).

        Returns:
            A :class:`PreparedInput`; ``error`` says why the file cannot be scored.
        """
        name = display_path(path)
        kind = "video" if is_video_path(path) else "image"
        prepared = PreparedInput(path=name, kind=kind, sha256=None)
        try:
            if kind == "video":
                prepared.sha256 = self._hash_video(path)
                frames = sample_video_frames(path, frames_per_video=self.settings.video_frames)
                prepared.frames = len(frames)
                self._prepare_images(prepared, [f.image for f in frames], [f.frame_index for f in frames])
            else:
                data = read_image_bytes(path)
                prepared.sha256 = sha256_of_bytes(data)
                image = decode_image(data, name)
                del data
                if keep_image:
                    prepared.image = image
                self._prepare_images(prepared, [image], [None])
        except InputError as exc:
            prepared.error = str(exc)
            prepared.faces = []
        return prepared

    def prepare_image(self, image: np.ndarray, name: str = "image") -> PreparedInput:
        """Prepare an already-decoded RGB uint8 image (H, W, 3); ``name`` appears in messages."""
        prepared = PreparedInput(path=name, kind="image", sha256=None, image=image)
        try:
            self._prepare_images(prepared, [image], [None])
        except InputError as exc:
            prepared.error = str(exc)
        return prepared

    def _hash_video(self, path: str | os.PathLike[str]) -> str:
        check_readable_file(path)
        try:
            return sha256_of_file(path)
        except OSError as exc:
            raise InputError(f"{display_path(path)}: cannot read ({exc.strerror})") from None

    def _prepare_images(
        self, prepared: PreparedInput, images: list[np.ndarray], frame_indices: list[int | None]
    ) -> None:
        name = prepared.path
        found = self.preparer.find_faces(images, self.detector, self.settings.batch_size)
        for image, frame, faces in zip(images, frame_indices, found, strict=True):
            for index, face in enumerate(faces):
                where = f"face {index}" if frame is None else f"frame {frame} face {index}"
                try:
                    prepared.faces.append(self._prepare_face(image, face, index, frame))
                except InputError as exc:
                    prepared.face_failures.append(
                        FaceFailure(index, frame, face.box, f"{name}: {where}: {exc}")
                    )
        if not prepared.faces and not prepared.face_failures:
            where = "the image" if prepared.kind == "image" else f"any of the {len(images)} sampled frames"
            hint = (
                ""
                if self.detector is None
                else "; if the images are already aligned face crops, use --aligned"
            )
            raise InputError(
                f"{name}: no face found in {where} (MTCNN, faces of {self.preparation.min_face_size} px and more){hint}"
            )

    def _prepare_face(self, image: np.ndarray, face: Face, index: int, frame: int | None) -> PreparedFace:
        inputs = self.preparer.prepare(image, face, patch=self.uses_gaze)
        return PreparedFace(
            face_index=index,
            frame_index=frame,
            box=inputs.box,
            detector_score=inputs.score,
            # The cached crops are resized by this same function when training reads them.
            crop=np.ascontiguousarray(resize_crop(inputs.crop, self.image_size)),
            patch=None if inputs.patch is None else np.ascontiguousarray(inputs.patch),
            rotation=inputs.rotation,
        )


class Predictor:
    """Inference state: the loaded model folder, the face detector and the settings.

    What the run needs to know about the network (classes, image size, gaze inputs, experts)
    comes from the folder's config (``cfg``), not from a built model: with an ONNX runtime the
    torch model (:attr:`model`) is built only on first use, by Grad-CAM.

    Args:
        model_dir: a model folder (``config.toml``, ``weights.safetensors``, ``meta.json``).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        settings: threshold, face policy and mode (unset: the model folder's), batch size, video frames.
        weights: where the frozen pretrained towers the folder names are found.
        detector: a face detector to share; one is built on ``device`` when needed.

    Raises:
        ModelFolderError: the folder is missing, incompatible, or its weights changed since it was written.
        ConfigError: bad settings or device, or a face mode that contradicts the model folder.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        device: str = "cpu",
        settings: PredictorSettings | None = None,
        weights: WeightSources | None = None,
        detector: FaceDetector | None = None,
    ) -> None:
        self.settings = settings or PredictorSettings()
        self.runtime_asked = self.settings.runtime
        self.device = resolve_device(device)
        self.path = Path(model_dir)
        self.weights = weights
        self.meta = read_meta(self.path)
        self.cfg: DetectorConfig = read_config(self.path)
        self._model: Detector | None = None
        self._model_lock = threading.Lock()
        # The forward alone may run elsewhere (an ONNX export, the fast CPU mode); faces are
        # prepared by the same stage 1 whatever runs it. With an export the torch model is built
        # only when something needs it (Grad-CAM), so neither it nor its modules load at start-up.
        planned = planned_runtime(self.settings.runtime, self.device, self.path)
        # Hash the weights file while the model is built: hashlib releases the GIL on large
        # reads, so on a multi-core machine the checksum costs no wall time; an unchanged file's
        # hash comes from the checksum cache (core/weights/checksums.py) without reading it.
        with ThreadPoolExecutor(max_workers=1) as pool:
            digest = pool.submit(cached_sha256, self.path / WEIGHTS_FILE)
            model = self._load_model() if planned == TORCH else None
            weights_sha = digest.result()
        self._check_weights(weights_sha)
        self._model = model
        self.model_provenance: ModelProvenance = model_provenance(self.path, self.meta, weights_sha)
        self.runtime, self.export = resolve_runtime(
            self.settings.runtime,
            self.device,
            self.path,
            weights_sha,
            model_folder_sha256(self.path, self.meta, weights_sha),
        )
        self.forward = self.model if self.export is None else OnnxForward(self.path, self.export)
        self.class_names = [c.name for c in self.cfg.classes]
        self.real_classes = {i for i, c in enumerate(self.cfg.classes) if c.forgery_type == "Real"}
        self.image_size = self.cfg.image_size
        self.uses_gaze = self.cfg.uses_gaze  # no gaze patches are made for a model without gaze
        self.experts: tuple[str, ...] = tuple(self.cfg.experts)
        record = settings_of_model(self.meta, self.path)
        self.preparation = preparation_for(record, self.settings, self.path)
        self.preparation_source = (
            "the model folder's record of its training cache"
            if record is not None
            else "defaults: the model folder records no preprocessing (format 1, or its cache recorded none)"
        )
        # The settings in force, so provenance and a resumed scan see what ran.
        self.settings = replace(
            self.settings,
            faces=self.preparation.face_policy,
            face_mode="aligned" if self.preparation.aligned else "detect",
            runtime=self.runtime,
        )
        self.detector = None
        if not self.preparation.aligned:
            if detector is not None and detector.min_face_size != self.preparation.min_face_size:
                raise ConfigError(
                    f"the face detector searches faces of {detector.min_face_size} px and more, the model "
                    f"folder's preprocessing {self.preparation.min_face_size} px; build it with that size"
                )
            self.detector = detector or FaceDetector(
                self.device, min_face_size=self.preparation.min_face_size
            )
        self.inputs = InputPreparer(
            self.settings, self.preparation, self.image_size, self.uses_gaze, self.detector
        )
        self.preparer = self.inputs.preparer

    def _check_weights(self, weights_sha: str) -> None:
        recorded = str(self.meta.get("weights_sha256", ""))
        if recorded and recorded != weights_sha:
            # The verdict must come from the model the folder describes: refuse an edited folder.
            raise ModelFolderError(
                f"{self.path / WEIGHTS_FILE}: SHA-256 {weights_sha[:12]}... differs from the one meta.json "
                f"recorded ({recorded[:12]}...); the weights were changed after the folder was written, "
                "restore the original folder"
            )

    def _load_model(self) -> Detector:
        # Imported here: the network's modules (open_clip, torchvision) load only when torch runs.
        from gazeclip_cli.core.model.optimize import optimize_for_inference

        folder = load_model_folder(self.path, self.weights, self.device, with_text=False)
        # Folded BatchNorm, channels-last convolutions, oneDNN linears: the same outputs (to 1e-5),
        # about 1.9x faster on a CPU (core/model/optimize.py, docs/PERFORMANCE.md).
        return optimize_for_inference(folder.model)

    @property
    def model(self) -> Detector:
        """The torch model of the test path: loaded at start-up when torch runs the forward, else on
        first use (Grad-CAM beside an ONNX forward), after checking the weights are still the ones
        the run started with (their cached SHA-256)."""
        with self._model_lock:
            if self._model is None:
                current = cached_sha256(self.path / WEIGHTS_FILE)
                if current != self.model_provenance.weights_sha256:
                    raise ModelFolderError(
                        f"{self.path / WEIGHTS_FILE}: changed since this run started (SHA-256 "
                        f"{current[:12]}..., then {self.model_provenance.weights_sha256[:12]}...); run again"
                    )
                self._model = self._load_model()
            return self._model

    @property
    def model_loaded(self) -> bool:
        """Whether the torch model has been built (always with the torch runtime)."""
        return self._model is not None

    def pretrained_files(self) -> dict[str, Path]:
        """The pretrained weight files the torch model loads (weight name -> file), for workers that
        build it elsewhere: the loaded model's, or (an ONNX run, nothing built) the files the folder
        needs where they are found; one missing is left for the worker that needs it to report."""
        if self._model is not None:
            return dict(self._model.pretrained_files)
        sources = self.weights or WeightSources()
        found: dict[str, Path] = {}
        for name in self.meta.get("needs_weight_files", sorted(self.meta.get("weight_files", {}))):
            try:
                found[name] = resolve_weight(
                    name, weights_dir(sources.directory), sources.overrides.get(name)
                )
            except WeightsError:
                continue
        return found

    def provenance(self, extra: dict[str, Any] | None = None) -> Provenance:
        """The provenance block of a run with this predictor, timed now."""
        settings = {
            **self.settings.as_dict(),
            "preprocessing": self.preparation.record(),
            "preprocessing_from": self.preparation_source,
            "runtime_export": None if self.export is None else _export_provenance(self.export),
        }
        return build_provenance(self.model_provenance, str(self.device), settings, extra)

    # Stage 1: files -> prepared faces (CPU; safe to call from several threads): see InputPreparer.

    def prepare(self, path: str | os.PathLike[str], *, keep_image: bool = False) -> PreparedInput:
        """Stage 1 for one file (:meth:`InputPreparer.prepare`); never raises for a bad input."""
        return self.inputs.prepare(path, keep_image=keep_image)

    def prepare_image(self, image: np.ndarray, name: str = "image") -> PreparedInput:
        """Stage 1 for an already-decoded RGB uint8 image (:meth:`InputPreparer.prepare_image`)."""
        return self.inputs.prepare_image(image, name)

    # Stage 2: prepared faces -> predictions (the model's device).

    def input_tensors(self, faces: Sequence[PreparedFace]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network inputs of some faces: images (B, 3, H, H) and gaze patches (B, 3, 224, 224) or None."""
        images = to_tensor([f.crop for f in faces], self.device)
        patches = to_tensor([f.patch for f in faces], self.device) if self.uses_gaze else None  # type: ignore[misc]
        return images, patches

    @torch.inference_mode()
    def predict_faces(self, faces: Sequence[PreparedFace]) -> list[FacePrediction]:
        """Verdicts on prepared faces, in order, ``settings.batch_size`` faces per forward pass."""
        predictions: list[FacePrediction] = []
        bs = self.settings.batch_size
        for start in range(0, len(faces), bs):
            chunk = faces[start : start + bs]
            images, patches = self.input_tensors(chunk)
            out = self.forward(images, patches)
            p_att = p_det = None
            if out.attribution_logits is not None:
                p_att = torch.softmax(out.attribution_logits.float(), dim=-1).cpu().numpy()  # (B, x)
            if out.detection_logits is not None:
                p_det = torch.softmax(out.detection_logits.float(), dim=-1)[:, 1].cpu().numpy()  # (B,)
            gaze = out.gaze.float().cpu().numpy() if out.gaze is not None else None  # (B, 2)
            for i, face in enumerate(chunk):
                predictions.append(
                    self._face_prediction(
                        face,
                        None if p_att is None else p_att[i],
                        None if p_det is None else float(p_det[i]),
                        gaze,
                        i,
                    )
                )
        return predictions

    def _verdict(self, probs: np.ndarray | None, p_fake: float | None) -> dict[str, Any]:
        """The verdict fields faces and videos share; None where the model lacks the expert."""
        top = self._top(probs) if probs is not None else ()
        return {
            "verdict": None if p_fake is None else ("fake" if p_fake >= 0.5 else "real"),
            "p_fake": p_fake,
            "generator": top[0].name if top else None,
            "generator_probability": top[0].probability if top else None,
            "unknown": top[0].probability < self.settings.threshold if top else None,
            "top": top,
        }

    def _face_prediction(
        self,
        face: PreparedFace,
        probs: np.ndarray | None,
        p_fake: float | None,
        gaze: np.ndarray | None,
        row: int,
    ) -> FacePrediction:
        return FacePrediction(
            face_index=face.face_index,
            frame_index=face.frame_index,
            box=face.box,
            detector_score=face.detector_score,
            **self._verdict(probs, p_fake),
            probabilities=() if probs is None else tuple(float(p) for p in probs),
            gaze_pitch=None if gaze is None else float(gaze[row, 0]),
            gaze_yaw=None if gaze is None else float(gaze[row, 1]),
        )

    def _top(self, probs: np.ndarray) -> tuple[ClassProbability, ...]:
        # Stable sort: ties go to the lower class index, so equal inputs give equal outputs.
        order = np.argsort(-probs, kind="stable")[: self.settings.top_k]
        return tuple(ClassProbability(self.class_names[int(i)], float(probs[int(i)])) for i in order)

    def result(self, prepared: PreparedInput, predictions: list[FacePrediction]) -> InputResult:
        """Assemble a file's result from its prepared faces' predictions (and the video verdict)."""
        res = InputResult(
            path=prepared.path,
            kind=prepared.kind,
            sha256=prepared.sha256,
            faces=predictions,
            face_failures=list(prepared.face_failures),
            error=prepared.error,
        )
        if prepared.kind == "video" and predictions:
            res.video = self.video_verdict(predictions)
        return res

    def video_verdict(self, predictions: Sequence[FacePrediction]) -> VideoVerdict:
        """A video's verdict from its frames' face predictions (see :class:`VideoVerdict`)."""
        per_frame: dict[int | None, float] = {}
        for p in predictions:
            per_frame[p.frame_index] = max(per_frame.get(p.frame_index, 0.0), p.p_fake or 0.0)
        has_det, has_att = predictions[0].p_fake is not None, bool(predictions[0].probabilities)
        p_fake = float(np.mean(list(per_frame.values()))) if has_det else None
        probs = np.mean(np.array([p.probabilities for p in predictions]), axis=0) if has_att else None
        return VideoVerdict(frames_scored=len(per_frame), **self._verdict(probs, p_fake))

    def describe(self, v: FacePrediction | VideoVerdict) -> str:
        """The two experts' verdicts in words for a person: real or fake, and by what (or unknown).
        A model with one expert (Fig. 9) is described by that expert alone."""
        reach = f"no known class reaches p {self.settings.threshold:g}"
        if v.generator is None:  # no attribution expert
            return f"{v.verdict} by detection (the model has no attribution expert)"
        if v.verdict is None:  # no detection expert
            if v.unknown:
                return f"from an unknown source ({reach}; the model has no detection expert)"
            return f"attributed to {v.generator} (the model has no detection expert)"
        real_source = self.class_names.index(v.generator) in self.real_classes
        if v.unknown and v.verdict == "real":
            return f"real, from a source unlike any the model knows ({reach})"
        if v.unknown:
            return f"fake, made by an unknown generator ({reach})"
        if v.verdict == "real":
            if real_source:
                return f"real, attributed to the real source {v.generator}"
            return f"real by detection, yet attributed to {v.generator}: the two experts disagree"
        if real_source:
            return f"fake by detection, yet attributed to the real source {v.generator}: the two experts disagree"
        return f"fake, made by {v.generator}"

    def gradcam(self, face: PreparedFace, class_index: int | None = None) -> GradCam:
        """Grad-CAM of one face's attribution logit (the predicted class by default) over its crop."""
        images, patches = self.input_tensors([face])
        return grad_cam(self.model, images, patches, class_index)

    def predict_file(self, path: str | os.PathLike[str]) -> InputResult:
        """Both stages for one file."""
        prepared = self.prepare(path)
        return self.result(prepared, self.predict_faces(prepared.faces) if prepared.faces else [])


def _export_provenance(record: ExportRecord) -> dict[str, Any]:
    """What a run's provenance says about the export that ran its forward."""
    keys = ("runtime", "onnx_sha256", "weights_sha256", "onnxruntime_version", "torch_version", "created")
    return {k: getattr(record, k) for k in keys}


def camera_gaze(pitch: float, yaw: float, rotation: np.ndarray | None) -> tuple[float, float]:
    """Gaze (pitch, yaw) from the normalised camera back in the source camera's axes.

    The estimator sees the normalised patch, so its angles are in the virtual camera; the
    rotation of the normalisation (camera -> normalised camera) undoes that. Conventions
    as ETH-XGaze (:func:`~gazeclip_cli.core.data.gaze_normalization.pitchyaw_to_vector`).
    """
    vec = pitchyaw_to_vector(np.array([[pitch, yaw]]))[0]
    if rotation is not None:
        vec = np.asarray(rotation, dtype=np.float64).T @ vec  # normalised camera -> source camera
    p, y = vector_to_pitchyaw(vec[None])[0]
    return float(p), float(y)
