"""The fast CPU runtime: a model folder's test-path forward exported once to ONNX, run by ONNX Runtime.

Only the forward (images, gaze patches -> logits, gaze) is replaced; faces are found and prepared
by the one shared path. Why ONNX Runtime, and the figures: docs/DECISIONS.md, docs/PERFORMANCE.md.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gazeclip_cli import __version__
from gazeclip_cli.core.errors import ConfigError, InputError, ModelFolderError
from gazeclip_cli.core.model.detector import Detector, DetectorOutput
from gazeclip_cli.core.model.folder import WEIGHTS_FILE, load_model_folder, model_folder_sha256, read_meta
from gazeclip_cli.core.weights.checksums import cached_sha256
from gazeclip_cli.core.weights.locate import WeightSources

TORCH = "torch"  # the model as loaded and rewritten by optimize_for_inference (fp32)
ONNX = "onnx"  # the same graph in fp32, run by ONNX Runtime: the fast CPU mode
ONNX_INT8 = "onnx-int8"  # ONNX with the transformers' 3-D matmuls quantised to int8 (dynamic)
# ONNX with the convolutions and the AGPM's products in static int8 (QDQ, activation ranges
# calibrated on prepared faces, weights per channel), the image tower's products as in onnx-int8
ONNX_INT8_STATIC = "onnx-int8-static"
AUTO = "auto"  # ONNX when the folder has a current export and the device is the CPU, else torch
EXPORT_RUNTIMES = (ONNX, ONNX_INT8, ONNX_INT8_STATIC)
CALIBRATED = (ONNX_INT8_STATIC,)  # the runtimes whose export needs calibration faces
RUNTIMES = (AUTO, TORCH, *EXPORT_RUNTIMES)
OPSET = 17
OUTPUTS = ("attribution_logits", "detection_logits", "visual_features", "gaze")
CHECK_BATCH = 3  # faces of the export's own check (torch against ONNX Runtime); not the export's batch
MIN_CALIBRATION_FACES = 8  # a floor against calibrating on one or two files by mistake, not a measured need
CALIBRATION_BATCH = 8  # faces per calibration pass (memory: every intermediate tensor is kept per pass)


def export_files(folder: str | os.PathLike[str], runtime: str) -> tuple[Path, Path]:
    """The graph and its provenance record of one runtime's export inside a model folder."""
    folder = Path(folder)
    return folder / f"{runtime}.onnx", folder / f"{runtime}.export.json"


def export_command(folder: str | os.PathLike[str], runtime: str) -> str:
    """The command that (re)writes a folder's export, for error messages."""
    return f"gazeclip export {folder}" + ("" if runtime == ONNX else f" --runtime {runtime}")


@dataclass(frozen=True)
class ExportRecord:
    """What an export was made from and with (``<runtime>.export.json``)."""

    runtime: str
    weights_sha256: str  # of weights.safetensors when exported: a later change makes the export stale
    model_sha256: str  # model_folder_sha256: config, weights and the named weight files
    onnx_sha256: str  # of the graph file
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]  # the DetectorOutput fields the graph returns, in order
    opset: int
    onnxruntime_version: str
    torch_version: str
    tool_version: str
    created: str
    check_max_abs_diff: (
        float  # largest |output difference| against the torch forward on CHECK_BATCH random faces
    )
    # calibrated runtimes: what the ranges were measured on (source, files, faces, face mode, the
    # inputs' SHA-256) and the largest |difference| from torch per output on those faces; else None
    calibration: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportRecord:
        data = dict(data)
        data["inputs"], data["outputs"] = tuple(data["inputs"]), tuple(data["outputs"])
        return cls(**data)


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "the ONNX runtimes need onnxruntime, which is not installed: pip install onnxruntime"
        ) from None
    return onnxruntime


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime '{runtime}': use one of {', '.join(RUNTIMES)}")
    return runtime


class MatrixAdaptivePool(nn.Module):
    """``AdaptiveAvgPool2d`` from a known input size as two matrix products (exact to float rounding).

    The ONNX exporter has no adaptive pooling whose output size does not divide the input size
    (the AGPM pools 8 x 8 to 7 x 7 at 256); the same averages, as torch computes them
    (window ``[floor(i n / m), ceil((i + 1) n / m))``), are ``P_h X P_w^T``. (B, C, n, n) -> (B, C, m, m).
    """

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        pool = torch.zeros(n_out, n_in)
        for i in range(n_out):
            start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
            pool[i, start:end] = 1.0 / (end - start)
        self.register_buffer("pool", pool, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.pool, x), self.pool.t())


class _Graph(nn.Module):
    """The test path as the exporter traces it: (images, patches) -> the outputs a model has."""

    def __init__(self, model: Detector, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, images: torch.Tensor, patches: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.model(images, patches)
        return tuple(getattr(out, name) for name in self.outputs)


def _exportable(model: Detector, images: torch.Tensor, patches: torch.Tensor | None) -> Detector:
    """A copy of the inference model the TorchScript exporter can trace, with the same outputs.

    Adaptive pools whose output size does not divide their input become :class:`MatrixAdaptivePool`
    (the inference rewrite's oneDNN kernels give way to their plain ops by themselves when traced).
    """
    graph = copy.deepcopy(model)
    sizes: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda mod, args, out, name=name: sizes.__setitem__(name, args[0].shape[-1]))
        for name, m in graph.named_modules()
        if isinstance(m, nn.AdaptiveAvgPool2d)
    ]
    with torch.no_grad():
        graph(images, patches)
    for hook in hooks:
        hook.remove()
    for name, n_in in sizes.items():
        parent_name, _, child = name.rpartition(".")
        pool = graph.get_submodule(name)
        size = pool.output_size
        n_out = size if isinstance(size, int) else size[0]
        square = isinstance(size, int) or size[0] == size[1]
        if square and n_out is not None and n_in % n_out:
            setattr(
                graph.get_submodule(parent_name) if parent_name else graph,
                child,
                MatrixAdaptivePool(n_in, n_out),
            )
    return graph


def _check_inputs(model: Detector, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(0)
    size = model.cfg.image_size  # type: ignore[attr-defined]
    images = torch.rand(batch, 3, size, size, generator=generator)
    patches = torch.rand(batch, 3, 224, 224, generator=generator) if model.uses_gaze else None
    return images, patches


def _atomic_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    return Path(tmp)


@dataclass(frozen=True)
class Calibration:
    """The face files a calibrated (static int8) export measures its activation ranges on.

    They are prepared by the predictor's stage 1 under the model folder's own preparation, as
    ``scan`` prepares what it scores; ``aligned`` says they are aligned face crops (``scan
    --aligned``), else the folder's face mode applies.
    """

    files: tuple[Path, ...]
    source: str  # what they are, in words, for the export's record
    aligned: bool = False


def calibration_from(roots: Sequence[str | os.PathLike[str]], aligned: bool = False) -> Calibration:
    """The images and videos under ``roots`` (walked as ``scan`` walks its inputs) as a calibration.

    Raises:
        InputError: a root is missing, or none holds an image or video.
    """
    from gazeclip_cli.core.inference.scan import iter_inputs

    items = list(iter_inputs(roots))
    for item in items:
        if item.error is not None:
            raise InputError(item.error)
    names = ", ".join(str(r) for r in roots)
    if not items:
        raise InputError(f"{names}: no images or videos to calibrate on")
    return Calibration(files=tuple(Path(i.path) for i in items), source=names, aligned=aligned)


def export_model_folder(
    model_dir: str | os.PathLike[str],
    runtime: str = ONNX,
    weights: WeightSources | None = None,
    calibration: Calibration | None = None,
) -> ExportRecord:
    """Convert a model folder's test path once for ``runtime`` and write it, with its record, into the folder.

    The graph is checked against the torch forward on random inputs (and, when calibrated, on
    the calibration faces) before it is kept.

    Raises:
        ModelFolderError: the folder cannot be loaded, or its weights differ from meta.json's record.
        ConfigError: an unknown runtime, onnxruntime missing, the architecture does not export, or
            a calibrated runtime without calibration files.
        InputError: the calibration files give too few faces.
    """
    # The torch network's modules (open_clip, torchvision) are imported by exporting, not by running an export.
    from gazeclip_cli.core.model.optimize import optimize_for_inference

    if runtime not in EXPORT_RUNTIMES:
        raise ConfigError(f"runtime '{runtime}': exports are made for {', '.join(EXPORT_RUNTIMES)}")
    if runtime in CALIBRATED and calibration is None:
        raise ConfigError(f"runtime '{runtime}' calibrates on faces: give the export calibration files")
    if runtime not in CALIBRATED and calibration is not None:
        raise ConfigError(f"runtime '{runtime}' takes no calibration (only {', '.join(CALIBRATED)} does)")
    ort = _onnxruntime()
    folder = Path(model_dir)
    meta = read_meta(folder)
    weights_sha = cached_sha256(folder / WEIGHTS_FILE)
    recorded = str(meta.get("weights_sha256", ""))
    if recorded and recorded != weights_sha:
        raise ModelFolderError(
            f"{folder / WEIGHTS_FILE}: SHA-256 differs from the one meta.json recorded; "
            "the weights were changed after the folder was written, restore the original folder"
        )
    feeds: list[dict[str, Any]] = []
    calib_info: dict[str, Any] | None = None
    if calibration is None:
        loaded = load_model_folder(folder, weights, "cpu", with_text=False)
        model, arch = optimize_for_inference(loaded.model), loaded.model.cfg.name
    else:
        model, arch, feeds, calib_info = _calibration_inputs(folder, weights, calibration)
    images, patches = _check_inputs(model, CHECK_BATCH)
    with torch.inference_mode():
        want = model(images, patches)
        calib_want = [model(*(torch.from_numpy(v) for v in f.values())) for f in feeds]
    outputs = tuple(n for n in OUTPUTS if getattr(want, n) is not None)
    inputs = ("images", "patches") if model.uses_gaze else ("images",)
    graph = _Graph(_exportable(model, images, patches), outputs).eval()
    onnx_path, record_path = export_files(folder, runtime)
    fp32_tmp = _atomic_path(onnx_path)
    args = (images, patches) if model.uses_gaze else (images,)
    try:
        try:
            with _quiet():
                torch.onnx.export(
                    graph,
                    args,
                    str(fp32_tmp),
                    dynamo=False,
                    input_names=list(inputs),
                    output_names=list(outputs),
                    dynamic_axes={name: {0: "batch"} for name in (*inputs, *outputs)},
                    opset_version=OPSET,
                )
        except Exception as exc:  # the exporter raises many types; the message says which operator
            raise ConfigError(
                f"{folder}: architecture '{arch}' does not export to ONNX "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None
        if runtime != ONNX:
            int8_tmp = _atomic_path(onnx_path)
            try:
                with _quiet():
                    if runtime == ONNX_INT8:
                        _quantize_dynamic(fp32_tmp, int8_tmp)
                    else:
                        _quantize_static(fp32_tmp, int8_tmp, feeds)
            except BaseException:
                int8_tmp.unlink(missing_ok=True)
                raise
            fp32_tmp.unlink()
            fp32_tmp = int8_tmp
        session = _session(ort, fp32_tmp, 1)
        check = {"images": images.numpy()} | ({"patches": patches.numpy()} if patches is not None else {})
        diff = _max_abs_diff(session.run(list(outputs), check), want, outputs)
        if calib_info is not None:
            worst = dict.fromkeys(outputs, 0.0)
            for feed, w in zip(feeds, calib_want, strict=True):
                for g, n in zip(session.run(list(outputs), feed), outputs, strict=True):
                    worst[n] = max(worst[n], _max_abs_diff([g], w, (n,)))
            calib_info["max_abs_diff"] = worst
        os.replace(fp32_tmp, onnx_path)
    finally:
        fp32_tmp.unlink(missing_ok=True)
    record = ExportRecord(
        runtime=runtime,
        weights_sha256=weights_sha,
        model_sha256=model_folder_sha256(folder, meta, weights_sha),
        onnx_sha256=cached_sha256(onnx_path),
        inputs=inputs,
        outputs=outputs,
        opset=OPSET,
        onnxruntime_version=ort.__version__,
        torch_version=torch.__version__,
        tool_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        check_max_abs_diff=diff,
        calibration=calib_info,
    )
    tmp = _atomic_path(record_path)
    tmp.write_text(json.dumps(record.as_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, record_path)
    return record


def _max_abs_diff(got: list[Any], want: DetectorOutput, outputs: tuple[str, ...]) -> float:
    return max(
        float((torch.from_numpy(g) - getattr(want, n)).abs().max()) for g, n in zip(got, outputs, strict=True)
    )


def _calibration_inputs(
    folder: Path, weights: WeightSources | None, calibration: Calibration
) -> tuple[Detector, str, list[dict[str, Any]], dict[str, Any]]:
    """The inference model and the calibration faces' network inputs, prepared as ``scan`` prepares faces.

    A torch :class:`~gazeclip_cli.core.inference.predictor.Predictor` of the folder does both:
    its stage 1 (the folder's own preparation) and its ``input_tensors`` are what a scan's
    faces go through, so the ranges are measured on what the graph will be given.
    """
    from gazeclip_cli.core.inference.predictor import Predictor, PredictorSettings

    settings = PredictorSettings(face_mode="aligned" if calibration.aligned else None, runtime=TORCH)
    predictor = Predictor(folder, settings=settings, weights=weights)
    faces, failed = [], 0
    for path in calibration.files:
        prepared = predictor.prepare(path)
        faces.extend(prepared.faces)
        failed += prepared.error is not None
    if len(faces) < MIN_CALIBRATION_FACES:
        raise InputError(
            f"{calibration.source}: {len(faces)} faces from {len(calibration.files)} files ({failed} without a "
            f"usable face); a calibration needs at least {MIN_CALIBRATION_FACES}"
        )
    feeds, digest = [], hashlib.sha256()
    for start in range(0, len(faces), CALIBRATION_BATCH):
        images, patches = predictor.input_tensors(faces[start : start + CALIBRATION_BATCH])
        feed = {"images": images.numpy()} | ({"patches": patches.numpy()} if patches is not None else {})
        for value in feed.values():
            digest.update(value.tobytes())
        feeds.append(feed)
    info = {
        "source": calibration.source,
        "files": len(calibration.files),
        "faces": len(faces),
        "face_mode": predictor.settings.face_mode,
        "inputs_sha256": digest.hexdigest(),
    }
    return predictor.model, predictor.cfg.name, feeds, info


def _quantize_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=_int8_nodes(src),
    )


def _quantize_static(src: Path, dst: Path, feeds: list[dict[str, Any]]) -> None:
    """Static QDQ int8 where calibrated ranges hold, dynamic int8 for the CLIP image tower.

    The graph is first constant-folded (onnxruntime's quantisation pre-processing): the exporter
    leaves many weights behind Transpose and Identity nodes, which the quantiser then skips
    (1.34x torch's one-thread forward without it, 2.9x with it; docs/DECISIONS.md). The nodes of
    :func:`_static_int8_nodes` get activation ranges from the calibration passes (min-max),
    weights per channel, uint8 activations and int8 weights at full range (what the x86 kernels
    with VNNI take without saturation, onnxruntime's quantisation guide). The image tower's
    products (:data:`DYNAMIC_IN_STATIC`) are then quantised as in ``onnx-int8``: their ranges
    measured on the demo's renders did not hold on real photos (P(fake) moved by 0.037), ranges
    measured per batch do, at the same speed.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    folded, static = _atomic_path(dst), _atomic_path(dst)
    try:
        quant_pre_process(str(src), str(folded), skip_symbolic_shape=True)
        quantize_static(
            str(folded),
            str(static),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            nodes_to_quantize=_static_int8_nodes(folded),
            calibrate_method=CalibrationMethod.MinMax,
        )
        dynamic = [n for n in _int8_nodes(static) if any(part in n for part in DYNAMIC_IN_STATIC)]
        quantize_dynamic(
            str(static),
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=dynamic,
        )
    finally:
        folded.unlink(missing_ok=True)
        static.unlink(missing_ok=True)


INT8_KEPT_FP32 = ("expert", "fuse_", "gaze", "/pool")  # node-name parts of the matmuls left in fp32


def _int8_nodes(path: Path) -> list[str]:
    """The matmuls quantised to int8: the transformers' products (linears and attention).

    The heads, the fusion projections, the gaze estimator's regression and adapter, and the
    exact pooling stay fp32: their outputs are what a person reads (P(fake), gaze angles),
    and the quantiser would otherwise rewrite every Gemm as an int8 MatMul too.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and not any(part in node.name for part in INT8_KEPT_FP32)
    ]


STATIC_KEPT_FP32 = ("/agpm/encoder/",)  # node-name parts of the convolutions static int8 leaves in fp32
DYNAMIC_IN_STATIC = ("/gie/",)  # node-name parts of the products onnx-int8-static quantises dynamically


def _static_int8_nodes(path: Path) -> list[str]:
    """The nodes static int8 quantises: the convolutions but the AGPM's, and the products with a weight matrix.

    The convolutions are the gaze estimator's ResNet and the towers' patch embeddings; the
    products are the AGPM transformer's linears (the image tower's are quantised dynamically,
    :func:`_quantize_static`). The AGPM's appearance encoder stays fp32: it reads
    the faint traces a generator leaves, and in 8 bits it alone moved the demo model's P(fake)
    by 0.07 (every other part together by 0.003) for 2% of the test path's MACs. The heads,
    fusion projections, gaze regression and pooling stay fp32 as in :func:`_int8_nodes`; so do
    the attention's products of two activations (the softmax's output in 8 bits moved P(fake)
    more for no speed), the normalisations and the softmaxes.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return [
        node.name
        for node in graph.node
        if (node.op_type == "Conv" and not any(part in node.name for part in STATIC_KEPT_FP32))
        or (
            node.op_type in ("MatMul", "Gemm")
            and node.input[1] in weights
            and not any(part in node.name for part in (*INT8_KEPT_FP32, *DYNAMIC_IN_STATIC))
        )
    ]


@contextlib.contextmanager
def _quiet():
    """The exporter's tracer warnings and the quantiser's root-logger advice say nothing to a user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def has_export(folder: str | os.PathLike[str], runtime: str) -> bool:
    """Whether a folder holds an export for ``runtime`` (current or not)."""
    return export_files(folder, runtime)[1].is_file()


def read_export(
    folder: str | os.PathLike[str], runtime: str, weights_sha256: str, model_sha256: str
) -> ExportRecord:
    """A folder's export for ``runtime``, checked against the folder as it is now.

    Raises:
        ModelFolderError: the export is missing, unreadable, or stale (the weights, config or
            graph changed since it was written); the message says what to run.
    """
    onnx_path, record_path = export_files(folder, runtime)
    again = f"run `{export_command(folder, runtime)}`"
    if not record_path.is_file() or not onnx_path.is_file():
        raise ModelFolderError(f"{folder}: no {runtime} export (runtime '{runtime}' runs one); {again} once")
    try:
        record = ExportRecord.from_dict(json.loads(record_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelFolderError(f"{record_path}: unreadable export record ({exc}); {again}") from None
    if record.weights_sha256 != weights_sha256 or record.model_sha256 != model_sha256:
        raise ModelFolderError(
            f"{onnx_path}: stale export, the model folder changed since it was exported "
            f"(weights SHA-256 then {record.weights_sha256[:12]}..., now {weights_sha256[:12]}...); {again}"
        )
    if cached_sha256(onnx_path) != record.onnx_sha256:
        raise ModelFolderError(f"{onnx_path}: SHA-256 differs from its export record (edited?); {again}")
    return record


def _session(ort: Any, path: Path, threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxForward:
    """The exported forward, called like the model: (images, patches) -> :class:`DetectorOutput`.

    A session per intra-op thread count, that of the calling thread (``torch.get_num_threads``),
    so a scan's workers each get the budget they set, as with the torch model.
    """

    def __init__(self, folder: str | os.PathLike[str], record: ExportRecord) -> None:
        self.ort = _onnxruntime()
        self.path = export_files(folder, record.runtime)[0]
        self.record = record
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    def session(self, threads: int) -> Any:
        with self._lock:
            if threads not in self._sessions:
                self._sessions[threads] = _session(self.ort, self.path, threads)
            return self._sessions[threads]

    def __call__(self, images: torch.Tensor, patches: torch.Tensor | None = None) -> DetectorOutput:
        feeds = {"images": images.numpy()}
        if "patches" in self.record.inputs:
            feeds["patches"] = patches.numpy()  # type: ignore[union-attr]
        got = self.session(torch.get_num_threads()).run(list(self.record.outputs), feeds)
        values: dict[str, Any] = dict.fromkeys(OUTPUTS)
        values.update({n: torch.from_numpy(g) for n, g in zip(self.record.outputs, got, strict=True)})
        return DetectorOutput(**values)


def planned_runtime(asked: str, device: torch.device, folder: str | os.PathLike[str]) -> str:
    """The runtime a run will use, decided before any hash is known: torch or an export's runtime.

    ``auto`` is the ONNX export on the CPU when the folder has one, else torch: a folder is
    converted once by ``gazeclip export``, never on every run. The export itself is checked by
    :func:`resolve_runtime`; knowing the runtime first lets the predictor build the torch model
    only when torch runs the forward.

    Raises:
        ConfigError: an unknown runtime, or an ONNX runtime asked for another device than the CPU.
    """
    check_runtime(asked)
    if asked == TORCH or (asked == AUTO and (device.type != "cpu" or not has_export(folder, ONNX))):
        return TORCH
    if device.type != "cpu":
        raise ConfigError(
            f"runtime '{asked}' runs on the CPU only; with --device {device} use --runtime torch"
        )
    return ONNX if asked == AUTO else asked


def resolve_runtime(
    asked: str, device: torch.device, folder: str | os.PathLike[str], weights_sha256: str, model_sha256: str
) -> tuple[str, ExportRecord | None]:
    """The runtime a run uses (:func:`planned_runtime`) and its export's record (None for torch).

    Raises:
        ConfigError: an unknown runtime, or an ONNX runtime asked for another device than the CPU.
        ModelFolderError: the export asked for (or found by auto) is missing or stale.
    """
    runtime = planned_runtime(asked, device, folder)
    if runtime == TORCH:
        return TORCH, None
    return runtime, read_export(folder, runtime, weights_sha256, model_sha256)
